"""kill -9 a GPU worker mid-job, 100 times over one run, on the tiny Wan2.2 TI2V-5B pipeline.

A fresh worker process per kill would spend most of the run importing torch, so this test is
the pool worker's parent: it loads the pipeline once, then forks one worker per task it takes
off the broker (as django-q forks its workers), and the worker runs the real
``generation.tasks.run_job`` with a heartbeat that renews its lease. The worker tells the parent
when it has claimed its job; for most attempts the parent then draws a moment and sends SIGKILL,
mostly mid-generation, some during billing and the hand-over, a few before the claim. The real
reaper (``reap_lost_jobs``, run as its schedule would, with a short lease) requeues or fails
what the dead workers held and resends what the broker lost, until 100 kills have landed; then
every job runs to its end (post-processing on a real CPU `qcluster`) and the audit counts.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import random
import signal
import statistics
import time
import traceback
from collections import Counter
from dataclasses import dataclass

import pytest
from django.db import connections
from django.utils import timezone

from billing.models import UsageEvent
from generation import tasks, workers
from generation.models import Job, JobState
from generation.services import JobRequest, job_create
from tests import factories
from tests.support import faults

TARGET_KILLS = int(os.environ.get("REELCAST_FAULTS_KILLS", "100"))
SEED = int(os.environ.get("REELCAST_FAULTS_SEED", "20250601"))
MODEL = "wan2.2-ti2v-5b"
POOL = "gpu-faults"
CAPACITY = 3
LEASE_S = 0.8
KILL_SHARE = 0.9  # of the attempts that start while kills are still owed
BUDGET_S = 240.0  # a guard against a hang, far above a run's time

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@dataclass
class Attempt:
    job_id: str
    pipe: int  # the worker writes b"c" here once it holds the job, b"p" where it was told to
    started: float
    kill: str  # "" (none) or where: one of KILL_PLANS
    attempts_before: int
    billed_before: int
    claimed_at: float | None = None
    kill_at: float | None = None
    killed: bool = False


def _fork_worker(job_id: str, kill: str) -> tuple[int, int]:
    """One pool worker process for one task (it never returns into pytest); returns its pid
    and the read end of the pipe on which it announces its claim; it stops to be killed at the
    point ``kill`` names, unless that is "generating" (a moment the parent draws)."""
    connections.close_all()  # the child must not share the parent's database sockets
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        os.set_blocking(read_end, False)
        return pid, read_end
    code = 1
    try:
        os.close(read_end)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a stuck worker is
        gc.disable()  # a short life: collecting would only copy the parent's pages
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ["Q_CLUSTER_NAME"] = POOL
        holds, claim = workers.set_current_job, tasks._claim
        bill, enqueue = tasks._bill, tasks._enqueue

        def stop_here() -> None:
            os.write(write_end, b"p")
            time.sleep(60)  # SIGKILL comes first

        def stop_before_claim(job) -> bool:  # the task is taken, the job not yet claimed
            if kill == "before_claim":
                stop_here()
            return claim(job)

        def announce_claim(job_id: object) -> None:  # run_job calls this right after its claim
            holds(job_id)
            if job_id is not None:
                os.write(write_end, b"c")

        def bill_then_stop(job, measurements) -> None:  # the usage rows are committed
            bill(job, measurements)
            if kill == "after_billing":
                stop_here()

        def stop_before_enqueue(func: str, job_id: object, cluster: str) -> None:
            if kill == "at_hand_over" and func.endswith(".postprocess_job"):
                stop_here()  # the job is handed over; its task never reaches the broker
            enqueue(func, job_id, cluster)

        workers.set_current_job, tasks._claim = announce_claim, stop_before_claim
        tasks._bill, tasks._enqueue = bill_then_stop, stop_before_enqueue
        workers.start_heartbeat()
        tasks.run_job(job_id)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


# Where kills land, and how often: mid-generation at a random moment after the claim, after
# the usage rows are committed (before the hand-over), after the hand-over (before the CPU
# task is sent), and between taking the task and claiming the job.
KILL_PLANS = {"generating": 0.65, "after_billing": 0.15, "at_hand_over": 0.15, "before_claim": 0.05}


def _kill_plan(rng: random.Random) -> str:
    return rng.choices(list(KILL_PLANS), weights=list(KILL_PLANS.values()))[0]


def _landed(attempt: Attempt) -> str:
    """Where the kill landed, read from what the dead worker left behind."""
    job = Job.objects.values("state", "attempts").get(pk=attempt.job_id)
    billed = UsageEvent.objects.filter(job_id=attempt.job_id).count()
    if job["attempts"] == attempt.attempts_before:
        return "before_claim"
    if job["state"] in (JobState.RUNNING, JobState.QUEUED):  # queued: reaped already
        # (A retry's billing adds no rows: the first attempt's rows stand.)
        return "running_unbilled" if billed == attempt.billed_before else "running_billed"
    return "handed_over"


def _diagnose(job_ids: list[str]) -> dict:
    from generation import scheduler

    pool = next(p for p in scheduler.pools() if p.name == POOL)
    jobs = Job.objects.filter(pk__in=job_ids)
    return {
        "free_slots": scheduler.free_slots(pool),
        "dispatched_waiting": list(
            jobs.filter(state=JobState.QUEUED, dispatched_at__isnull=False).values_list(
                "dispatched_at", "pool", "tenant_id"
            )
        ),
        "candidates": len(scheduler._candidates(pool, timezone.now())),
        "queued_tasks": len(faults.take_tasks(POOL)),
    }


def test_100_kills_of_gpu_workers_lose_no_job_and_bill_no_shot_twice(
    settings, tiny_ti2v, queue_redis_url, tmp_path
):
    import torch

    from generation.backends import wan

    torch.set_num_threads(1)
    settings.REELCAST_MODEL_DIR = str(tiny_ti2v)
    settings.REELCAST_WAN_DEVICE = "cpu"
    settings.REELCAST_MODELS = {MODEL: {"steps": 2}}
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
        POOL: {"hardware_class": "cpu", "capacity": CAPACITY, "models": [MODEL]},
    }
    settings.REELCAST_LEASE_S = LEASE_S
    settings.REELCAST_HEARTBEAT_S = 0.2
    # The reaper resends a post-processing task nobody took within the broker's retry window.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 3}
    wan.pipeline_cache().clear()

    tenants = [factories.make_tenant(), factories.make_tenant()]
    templates = [
        factories.make_template(t, model=MODEL, width=64, height=64, fps=24, duration_s=0.2)
        for t in tenants
    ]
    rng = random.Random(SEED)
    job_ids: list[str] = []
    children: dict[int, Attempt] = {}
    kills: Counter[str] = Counter()  # by where they landed
    kills_by_plan: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    generation_times: list[float] = []
    generation_s = 0.3  # claim to exit, median of the attempts that ran to the end
    planned = 0
    started = time.monotonic()

    def submit(count: int) -> None:
        for _ in range(count):
            n = len(job_ids)
            job = job_create(
                tenant=tenants[n % 2],
                request=JobRequest(template=templates[n % 2], values={"name": f"Kid {n}"}),
            ).job
            job_ids.append(str(job.id))

    # The CPU cluster is a real `manage.py qcluster` (post-processing, billing follow-ups):
    # never killed here, and not forked from this process, whose earlier tests may have left
    # it holding what does not survive a fork (c2pa's signer, onnxruntime's threads).
    cpu_log = tmp_path / "cpu-worker.log"
    cpu_worker = faults.start_worker(
        faults.worker_env(
            queue_redis_url or "",
            tmp_path,
            REELCAST_LEASE_S="2",
            REELCAST_HEARTBEAT_S="0.5",
            REELCAST_QUEUE_POLL_S="0.1",
        ),
        cpu_log,
    )
    try:
        with faults.broker(queue_redis_url), faults.ResendCounter() as resends:
            # One job through generation here first: the pipeline, torch and PyAV are then
            # loaded once, and every forked worker inherits them warm.
            submit(1)
            faults.run_queue(POOL)
            assert Job.objects.get(pk=job_ids[0]).state == JobState.POSTPROCESSING
            # About the jobs the kills need; the rest is topped up as the run goes.
            submit(round(0.8 * TARGET_KILLS / (KILL_SHARE + KILL_SHARE**2)))
            gc.freeze()  # forked workers then copy far fewer pages (the collector touches all)
            next_poll, polls = 0.0, 0
            while True:
                time.sleep(0.005)
                now = time.monotonic()
                if now - started > BUDGET_S:
                    for pid in children:
                        os.kill(pid, signal.SIGUSR1)  # their stacks, on stderr
                    time.sleep(1)
                    pytest.fail(
                        f"not done in {BUDGET_S} s: kills={sum(kills.values())} "
                        f"{dict(outcomes)} workers_alive={len(children)} "
                        f"generation_s={generation_s:.3f} {_diagnose(job_ids)} "
                        f"jobs={faults.audit(job_ids)}"
                    )
                for pid, attempt in children.items():
                    with contextlib.suppress(BlockingIOError):
                        for probe in os.read(attempt.pipe, 8):
                            if probe == ord("c"):
                                attempt.claimed_at = now
                                if attempt.kill == "generating":
                                    # Generation is most of the time after the claim.
                                    attempt.kill_at = now + rng.uniform(0.0, 0.5) * generation_s
                            elif probe == ord("p"):
                                attempt.kill_at = now
                    if (
                        attempt.kill_at is not None
                        and not attempt.killed
                        and now >= attempt.kill_at
                    ):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        attempt.killed = True
                for pid in list(children):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if not done:
                        continue
                    attempt = children.pop(pid)
                    os.close(attempt.pipe)
                    planned -= bool(attempt.kill)
                    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                        kills[_landed(attempt)] += 1
                        kills_by_plan[attempt.kill] += 1
                    elif not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                        outcomes["crashed"] += 1
                    elif attempt.claimed_at is None:
                        outcomes["duplicate_deliveries"] += 1  # someone alive held the job
                    else:
                        outcomes["ran_to_the_end"] += 1
                        outcomes["kills_that_came_too_late"] += bool(attempt.kill)
                        generation_times.append(now - attempt.claimed_at)
                        generation_s = statistics.median(generation_times[-25:])
                if now < next_poll:
                    continue
                next_poll = now + 0.1
                delivered = sum(kills.values())
                # The two every-minute schedules, at the pace of the short lease: the reaper,
                # and the catch-up dispatch (a worker killed after its hand-over never asked
                # for the next job).
                tasks.reap_lost_jobs()
                polls += 1
                if polls % 5 == 0:
                    tasks.dispatch(POOL)
                open_jobs = Job.objects.filter(
                    pk__in=job_ids, state__in=[JobState.QUEUED, JobState.RUNNING]
                ).count()
                if delivered + planned < TARGET_KILLS and open_jobs < CAPACITY + 2:
                    submit(3)  # more work for the kills still to come
                elif open_jobs == 0 and not children:
                    break
                for task in faults.take_tasks(POOL):
                    job_id = task["args"][0]
                    kill = ""
                    if delivered + planned < TARGET_KILLS and rng.random() < KILL_SHARE:
                        kill = _kill_plan(rng)
                        planned += 1
                    attempts_before = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
                    billed_before = UsageEvent.objects.filter(job_id=job_id).count()
                    pid, pipe = _fork_worker(job_id, kill)
                    attempt = Attempt(
                        job_id, pipe, time.monotonic(), kill, attempts_before, billed_before
                    )
                    children[pid] = attempt
            kill_phase_s = time.monotonic() - started

            # The CPU worker finishes the rest; the reaper resends what the kills lost.
            while (
                Job.objects.filter(pk__in=job_ids).exclude(state__in=faults.RESTING_STATES).exists()
            ):
                if time.monotonic() - started > BUDGET_S:
                    pytest.fail(
                        f"post-processing not done: {faults.audit(job_ids)}\n{faults.tail(cpu_log)}"
                    )
                tasks.reap_lost_jobs()
                time.sleep(0.2)
    finally:
        gc.unfreeze()
        for pid, attempt in children.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(attempt.pipe)
        faults.stop_worker(cpu_worker)
        wan.pipeline_cache().clear()

    counts = faults.audit(job_ids)
    counts = {
        "kills": sum(kills.values()),
        **counts,
        "failed_worker_lost": counts["failed_by_code"].get("worker_lost", 0),
        "attempts_to_the_end": outcomes["ran_to_the_end"],
        "kills_that_came_too_late": outcomes["kills_that_came_too_late"],
        "duplicate_deliveries": outcomes["duplicate_deliveries"],
        "worker_crashes": outcomes["crashed"],
        "tasks_resent": resends.count,
        "claim_to_exit_s": round(generation_s, 3),
        "kill_phase_s": round(kill_phase_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "seed": SEED,
        "kills_by_plan": dict(sorted(kills_by_plan.items())),
        "kills_landed": dict(sorted(kills.items())),
    }
    faults.report("worker_kills", counts)

    assert counts["kills"] == TARGET_KILLS
    assert counts["worker_crashes"] == 0
    faults.assert_clean(counts)
    # A job dies with its worker at most MAX_ATTEMPTS times; then it fails, with the reason.
    assert set(counts["failed_by_code"]) <= {"worker_lost"}, counts
    assert counts["succeeded"] + counts["failed_worker_lost"] == counts["jobs"], counts
    assert max(counts["attempts"]) <= tasks.MAX_ATTEMPTS
    assert counts["succeeded"] > 0 and counts["failed_worker_lost"] > 0
