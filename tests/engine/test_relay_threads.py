"""The threads that relay event streams: one per job at once, parked between jobs, gone
after a while with nothing to do, never holding up the interpreter's exit."""

from __future__ import annotations

import threading
import time

from bodhi_jupyter.engine.relay_threads import RelayThreads


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_jobs_that_block_run_at_once_each_on_a_daemon_thread_of_its_own():
    threads = RelayThreads()
    release, seen, lock = threading.Event(), [], threading.Lock()

    def job():
        with lock:
            seen.append(threading.current_thread())
        release.wait(10)

    for _ in range(3):
        threads.run(job)
    wait_for(lambda: len(seen) == 3)  # none waited for another to end
    assert len(set(seen)) == 3 and threading.main_thread() not in seen
    assert all(t.daemon for t in seen)
    release.set()
    wait_for(lambda: threads.parked == 3)
    assert threads.started == 3


def test_a_parked_thread_takes_the_next_job():
    threads = RelayThreads()
    seen = []
    for _ in range(4):
        done = threading.Event()
        threads.run(lambda: (seen.append(threading.current_thread()), done.set()))
        assert done.wait(10)
        wait_for(lambda: threads.parked == 1)
    assert threads.started == 1 and len(set(seen)) == 1


def test_a_thread_parked_longer_than_idle_s_ends():
    threads = RelayThreads(idle_s=0.05)
    done, seen = threading.Event(), []
    threads.run(lambda: (seen.append(threading.current_thread()), done.set()))
    assert done.wait(10)
    seen[0].join(10)
    assert not seen[0].is_alive() and threads.parked == 0
    again = threading.Event()
    threads.run(again.set)  # a new thread starts for the next job
    assert again.wait(10) and threads.started == 2


def test_no_room_while_max_active_jobs_run():
    threads = RelayThreads(max_active=2)
    release = threading.Event()
    assert threads.has_room
    threads.run(lambda: release.wait(10))
    assert threads.has_room
    threads.run(lambda: release.wait(10))
    assert not threads.has_room  # at once: the count moves when the job is handed over
    release.set()
    wait_for(lambda: threads.parked == 2)
    assert threads.has_room


def test_a_reserved_place_counts_until_its_job_ends_or_it_is_released():
    threads = RelayThreads(max_active=1)
    threads.reserve()
    assert not threads.has_room  # held before any thread is woken
    threads.release()
    assert threads.has_room
    threads.reserve()
    release = threading.Event()
    threads.run(lambda: release.wait(10), reserved=True)
    assert not threads.has_room  # the job took the reserved place, not one more
    release.set()
    wait_for(lambda: threads.parked == 1)
    assert threads.has_room
