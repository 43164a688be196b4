"""parkweb settings, all taken from environment variables (see README, "Settings")."""

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _dev_secret_key() -> str:
    """A development key, generated once into an ignored file so sessions survive restarts."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or _dev_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
    "channels",
    "axes",
    "tenants",
    "lots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise, so that static HTML gets the policy too.
    "parkweb.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Logins (tenant pages and the operator admin alike) go through django-axes, which counts
# failures per username and per address and locks out guessing (see "Tenant isolation" in
# the README for how an operator unlocks someone).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("PARKWEB_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("PARKWEB_LOGIN_LOCKOUT_MINUTES", "15")))
# A username guessed at from many addresses, and an address guessing many usernames, are
# each locked out on their own.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429

ROOT_URLCONF = "parkweb.urls"
WSGI_APPLICATION = "parkweb.wsgi.application"
ASGI_APPLICATION = "parkweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A database that went away is noticed in seconds (readiness probes, watchers).
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Writers wait for each other instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so that worker processes started by tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Password-reset mail: printed to the console unless EMAIL_BACKEND says otherwise (for SMTP:
# django.core.mail.backends.smtp.EmailBackend with the EMAIL_HOST... settings below).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "parkweb@localhost")
# The largest API request body, in bytes (a lot is about 1 KB).
PARKWEB_API_MAX_BODY_BYTES = int(os.environ.get("PARKWEB_API_MAX_BODY_BYTES", "65536"))
# How long an invitation's one-time link works.
PARKWEB_INVITATION_DAYS = int(os.environ.get("PARKWEB_INVITATION_DAYS", "7"))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
# `collectstatic` fills it for production (deploy/); until then it is empty, and WhiteNoise
# would warn on every start that it is missing.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Static files are served by the app itself (WhiteNoise); `collectstatic` gathers them into
# STATIC_ROOT for production, and without it they are found where they live.
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# HTTPS, for production behind a proxy that ends TLS (deploy/parkweb.env sets them all;
# `manage.py check --deploy` passes with them). Off by default so that `make run` and the
# tests work over plain HTTP on loopback.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Monitoring asks over plain HTTP on the host itself; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Trust the proxy's X-Forwarded-Proto: only when a proxy in front sets it on every request
# (nginx in deploy/nginx/parkweb.conf does); else a client could claim HTTPS.
if env_bool("PARKWEB_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Monitoring (parkweb.operations): /metrics answers a caller with this bearer token, or one
# connecting from these addresses or networks (comma-separated); neither set: no one.
PARKWEB_METRICS_TOKEN = os.environ.get("PARKWEB_METRICS_TOKEN", "")
PARKWEB_METRICS_ALLOW = env_list("PARKWEB_METRICS_ALLOW", "")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "lots.api.auth.ApiKeyAuthentication",
        "lots.api.auth.StaffTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "lots.api.pagination.Pages",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "lots.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "lots.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Per caller (API key, staff token or session user) and, for callers without one, per
    # address; wrong keys and tokens are counted per address too (parkweb.throttles).
    "DEFAULT_THROTTLE_CLASSES": [
        "parkweb.throttles.CallerRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "caller": os.environ.get("PARKWEB_API_RATE", "1200/min"),
        "anon": os.environ.get("PARKWEB_API_ANON_RATE", "120/min"),
        "auth_failures": os.environ.get("PARKWEB_AUTH_FAILURE_RATE", "20/min"),
        "password_reset": os.environ.get("PARKWEB_PASSWORD_RESET_RATE", "5/hour"),
    },
    # Behind a reverse proxy, say how many: the client's address is then taken from
    # X-Forwarded-For (see "Production" in the README).
    "NUM_PROXIES": int(os.environ["PARKWEB_NUM_PROXIES"])
    if os.environ.get("PARKWEB_NUM_PROXIES")
    else None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "parkweb API",
    "DESCRIPTION": "Provision tenants, Asterisk servers, contexts and parking lots; see "
    "parked calls and deployments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "FeaturePartyEnum": "lots.models.FEATURE_PARTY_CHOICES",
        "WebhookEventTypeEnum": "lots.webhooks.EVENT_TYPES",
    },
    # The docs' Swagger UI comes from drf-spectacular-sidecar's static files: nothing is
    # loaded from another origin. No validator badge: it is an image from swagger.io.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# Content-Security-Policy of every HTML response (parkweb.csp). Every page, the admin and
# the API docs load scripts, styles, fonts and images from this site only, and run no
# inline script or style. `connect-src 'self'` also allows the board's websocket (same
# host and port, ws: or wss:). `data:` images: Swagger UI's style sheet draws its select
# arrows, toggles and copy buttons as data: URLs. Empty: no header.
PARKWEB_CSP = os.environ.get(
    "PARKWEB_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'; object-src 'none'",
)

# Redis: Celery broker and channel layer. Without it everything runs in one process:
# tasks inline, an in-memory channel layer (the embedded mode of `make run`).
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Throttles and login lockouts count across every web process.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "parkweb",
        }
    }
    # redis-py's asyncio pool refuses a connection past its size (100 by default) rather
    # than waiting for one, and every board that connects holds connections for its
    # group joins and its snapshot at once: after a web restart all boards reconnect
    # together. Size it for that; Redis itself allows 10,000 clients by default.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": int(
                            os.environ.get("PARKWEB_CHANNEL_LAYER_CONNECTIONS", "2000")
                        ),
                        # channels_redis waits up to 5 s on Redis for a board's next
                        # message (BZPOPMIN); redis-py's own read timeout is also 5 s, so
                        # a quiet board would fail with a TimeoutError and be closed
                        # (1011) every 5 s. Read for longer than Redis is asked to wait.
                        "socket_timeout": 15,
                    }
                ]
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Celery's Django fixup closes every database connection before and after every task
# unless this is set; then only every 2 x this many tasks. Between, a worker keeps Django's
# own rule around each task (CONN_MAX_AGE, a broken connection dropped: lots.apps). A new
# PostgreSQL connection per task cost a delivery worker a backend's start each time, and
# the load slowed every other query on the machine (bench/webhooks.py).
CELERY_DB_REUSE_MAX = 1000

# Keys that encrypt stored AMI secrets (Fernet, comma-separated; the first encrypts, all
# decrypt, so a key can be rotated). Without it a key is derived from SECRET_KEY.
PARKWEB_ENCRYPTION_KEYS = env_list("PARKWEB_ENCRYPTION_KEYS", "")

# Limits that keep one lot or one server within what Asterisk handles well.
PARKWEB_MAX_SPACES_PER_LOT = int(os.environ.get("PARKWEB_MAX_SPACES_PER_LOT", "500"))
# Lots per server: past about 1,500 lots a one-lot reload of res_parking takes over a
# second on these machines, and a reload stalls call setup (see bench/deploy.py).
PARKWEB_MAX_LOTS_PER_SERVER = int(os.environ.get("PARKWEB_MAX_LOTS_PER_SERVER", "1500"))

# Deploys: how long one may hold a server (lease on databases without advisory locks),
# and the retry backoff while Asterisk is unreachable.
PARKWEB_DEPLOY_LEASE_SECONDS = int(os.environ.get("PARKWEB_DEPLOY_LEASE_SECONDS", "30"))
PARKWEB_DEPLOY_RETRY_MAX_SECONDS = int(os.environ.get("PARKWEB_DEPLOY_RETRY_MAX_SECONDS", "60"))
# A burst of changes (a provisioning run) is deployed once it pauses for QUIET seconds,
# or after MAX_WAIT at the latest; a single change is deployed at once.
PARKWEB_DEPLOY_QUIET_SECONDS = float(os.environ.get("PARKWEB_DEPLOY_QUIET_SECONDS", "0.3"))
PARKWEB_DEPLOY_MAX_WAIT_SECONDS = float(os.environ.get("PARKWEB_DEPLOY_MAX_WAIT_SECONDS", "10"))
PARKWEB_AMI_TIMEOUT = float(os.environ.get("PARKWEB_AMI_TIMEOUT", "10"))
# How long a lot's save waits for the PBX to show its dialplan (to refuse extensions that
# already exist there); past it the save goes on and the deploy finds out.
PARKWEB_PRECHECK_TIMEOUT = float(os.environ.get("PARKWEB_PRECHECK_TIMEOUT", "3"))
# ... and reuses what it read for this long (a provisioning run asks once per context).
PARKWEB_PRECHECK_CACHE_SECONDS = float(os.environ.get("PARKWEB_PRECHECK_CACHE_SECONDS", "5"))
PARKWEB_RELOAD_TIMEOUT = float(os.environ.get("PARKWEB_RELOAD_TIMEOUT", "300"))
# Run the AMI watchers inside the web process when there is no Redis (embedded mode).
PARKWEB_EMBEDDED_WATCHERS = env_bool("PARKWEB_EMBEDDED_WATCHERS", True)
# Celery workers run the AMI watchers (one per server across all workers).
PARKWEB_WORKER_WATCHERS = env_bool("PARKWEB_WORKER_WATCHERS", True)
# Parked-call history kept (days); beat purges older episodes daily.
PARKWEB_HISTORY_DAYS = int(os.environ.get("PARKWEB_HISTORY_DAYS", "90"))
# How often beat compares each server's running lots with the database.
PARKWEB_RECONCILE_SECONDS = int(os.environ.get("PARKWEB_RECONCILE_SECONDS", "60"))
# Webhooks (lots.webhooks): seconds a request may take (connect, send, first answer);
# retries of a failing delivery wait BASE, 2 x BASE, ... at most MAX seconds, for
# RETRY_SECONDS in all, then the endpoint is paused. CA_FILE: a CA bundle to trust
# instead of the system's (a private CA for receivers staff allow on private networks).
PARKWEB_WEBHOOK_TIMEOUT = float(os.environ.get("PARKWEB_WEBHOOK_TIMEOUT", "5"))
PARKWEB_WEBHOOK_RETRY_BASE = float(os.environ.get("PARKWEB_WEBHOOK_RETRY_BASE", "1"))
PARKWEB_WEBHOOK_RETRY_MAX = float(os.environ.get("PARKWEB_WEBHOOK_RETRY_MAX", "300"))
PARKWEB_WEBHOOK_RETRY_SECONDS = float(os.environ.get("PARKWEB_WEBHOOK_RETRY_SECONDS", "3600"))
PARKWEB_WEBHOOK_CA_FILE = os.environ.get("PARKWEB_WEBHOOK_CA_FILE", "")
# The webhook log (every delivery, made or not) is kept this many days; beat purges
# older ones daily.
PARKWEB_WEBHOOK_LOG_DAYS = int(os.environ.get("PARKWEB_WEBHOOK_LOG_DAYS", "30"))
# Endpoints a delivery worker process sends to at once (threads; each endpoint's events
# still go one after the other, in order).
PARKWEB_WEBHOOK_THREADS = int(os.environ.get("PARKWEB_WEBHOOK_THREADS", "8"))
# How one tenant's slow receivers are kept from the others' deliveries: a delivery loop's
# round waits PATIENCE seconds for its sends, then lets the slow ones go on alone (at
# most STRAGGLERS_PER_TENANT of a tenant's endpoints at once; its others wait for them);
# a run starts sends for SEND_BUDGET seconds, then hands the rest to a fresh run.
PARKWEB_WEBHOOK_PATIENCE = float(os.environ.get("PARKWEB_WEBHOOK_PATIENCE", "0.25"))
PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT = int(
    os.environ.get("PARKWEB_WEBHOOK_STRAGGLERS_PER_TENANT", "2")
)
PARKWEB_WEBHOOK_SEND_BUDGET = float(os.environ.get("PARKWEB_WEBHOOK_SEND_BUDGET", "1"))
# A Celery queue of their own for webhook deliveries (workers started with `-Q <it>`), so
# slow receivers never hold back deploys; empty: the default queue every worker serves.
PARKWEB_WEBHOOK_QUEUE = os.environ.get("PARKWEB_WEBHOOK_QUEUE", "")
CELERY_TASK_ROUTES = (
    {
        "lots.tasks.webhook_deliver": {"queue": PARKWEB_WEBHOOK_QUEUE},
        "lots.tasks.webhooks_deliver": {"queue": PARKWEB_WEBHOOK_QUEUE},
    }
    if PARKWEB_WEBHOOK_QUEUE
    else {}
)

# Logs go to standard error (journald under systemd): plain lines, or one JSON object per
# line with PARKWEB_LOG_FORMAT=json (parkweb.logs: deploys and watchers add their server,
# tenants, deployment and outcome as fields).
LOG_FORMAT = os.environ.get("PARKWEB_LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "parkweb.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes tells every login at INFO; lockouts (WARNING) are what operators need.
    "loggers": {"axes": {"level": os.environ.get("AXES_LOG_LEVEL", "WARNING")}},
}
