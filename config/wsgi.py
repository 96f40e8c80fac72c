import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Import the job pipeline's modules now, while the process starts, rather than in the first
# request that creates a job (job_create enqueues through generation.tasks, whose imports take
# seconds: measured 2.5 s idle, 6-12 s on a loaded machine, by bench/load.py).
import generation.tasks  # noqa: E402, F401
