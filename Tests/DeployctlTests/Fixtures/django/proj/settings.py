import os

SECRET_KEY = "deployctl-test"
USE_TZ = True
INSTALLED_APPS = ["shop"]
# The database deployctl points the command at: DEPLOYCTL_DATABASE (DATABASE_URL carries the same path).
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DEPLOYCTL_DATABASE"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
