from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # django-q2 announces a new worker process only through this signal; it is the one
        # signal we use (no domain logic hangs off signals).
        from django_q.signals import post_spawn

        from generation.workers import on_worker_spawn

        post_spawn.connect(on_worker_spawn, dispatch_uid="reelcast-worker-spawn")
