"""Tests of ttcrouter.lifetime: the processes ttcrouter starts end when it ends.

Fast tests use plain Python processes started like vLLM starts its engine (multiprocessing
spawn, a child that starts a grandchild). Slow tests kill a real ``ttcrouter route`` (and
``ttcrouter collect``) once its vLLM engine runs.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from ttcrouter import lifetime
from ttcrouter.lifetime import MARKER_ENV, live_engine_pids, record_engine_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

ROOT = Path(__file__).resolve().parents[1]

#: The parent starts a spawned child inside reap_children_on_exit (or a subprocess, for the
#: exception case), the child starts a spawned grandchild; the parent prints their pids.
FAMILY = textwrap.dedent('''
    import multiprocessing as mp, os, subprocess, sys, time
    from ttcrouter.lifetime import reap_children_on_exit, exit_cleanly_on_sigterm

    def grandchild():
        time.sleep(600)

    def child(q):
        g = mp.get_context("spawn").Process(target=grandchild)
        g.start()
        q.put(g.pid)
        time.sleep(600)

    if __name__ == "__main__":
        mode = sys.argv[1]
        ctx = mp.get_context("spawn")
        if mode == "child":  # started by subprocess in the "raise" case
            q = ctx.Queue()
            child(q)
        q = ctx.Queue()
        with reap_children_on_exit():
            if mode == "raise":
                # not multiprocessing: its atexit would wait for a non-daemonic child
                c = subprocess.Popen([sys.executable, __file__, "child"])
            else:
                c = ctx.Process(target=child, args=(q,))
                c.start()
        print(c.pid, flush=True)
        if mode == "raise":
            time.sleep(3)
            raise RuntimeError("boom")
        with exit_cleanly_on_sigterm():
            try:
                time.sleep(600)
            finally:  # a clean shutdown, as VLLMGenerator.close does for the engine
                c.terminate()
''')


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(MARKER_ENV, None)
    # an in-process `main(["-q", ...])` of another test set vLLM's level in this process;
    # the tests read vLLM's info lines ("init engine")
    for key in [k for k in env if k.startswith("VLLM_LOGGING")]:
        del env[key]
    return env


def _alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs, timeout):
    """Seconds until none of ``procs`` is alive, or None if some still are after timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not any(_alive(p) for p in procs):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _kill_all(procs):
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def _start_family(tmp_path, mode, n_descendants):
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    proc = subprocess.Popen([sys.executable, str(script), mode], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    # the watchdog, the child, the grandchild (and multiprocessing's resource tracker)
    while len(parent.children(recursive=True)) < n_descendants:
        assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, parent.children(recursive=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_descendants_end_when_parent_is_killed(tmp_path, sig):
    mode = "term" if sig == signal.SIGTERM else "kill"
    proc, tree = _start_family(tmp_path, mode, 4)
    try:
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=30)
        gone = _wait_gone(tree, 10)
        survivors = [p.pid for p in tree if _alive(p)]
        assert gone is not None, f"alive after 10 s: {survivors}"
        if sig == signal.SIGTERM:
            assert rc == 143
            assert "Traceback" not in proc.stderr.read()
        else:
            assert rc == -signal.SIGKILL
            assert "ended" in proc.stderr.read()  # the watchdog says what it ended
    finally:
        _kill_all(tree)


def test_descendants_end_when_parent_raises(tmp_path):
    proc, tree = _start_family(tmp_path, "raise", 4)
    try:
        rc = proc.wait(timeout=30)
        assert rc == 1
        assert "RuntimeError: boom" in proc.stderr.read()
        assert _wait_gone(tree, 10) is not None, [p.pid for p in tree if _alive(p)]
    finally:
        _kill_all(tree)


def test_processes_started_outside_the_block_are_left_alone(tmp_path):
    script = tmp_path / "outside.py"
    script.write_text(textwrap.dedent('''
        import subprocess, sys, time
        from ttcrouter.lifetime import reap_children_on_exit
        with reap_children_on_exit():
            # no environment at all: adopted by parent pid, as vLLM's renamed processes are
            inside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                      env={})
        outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(inside.pid, outside.pid, flush=True)
        time.sleep(600)
    '''))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    inside, outside = map(psutil.Process, map(int, proc.stdout.readline().split()))
    try:
        proc.kill()
        proc.wait()
        assert _wait_gone([inside], 10) is not None
        time.sleep(0.5)
        assert _alive(outside)
        assert MARKER_ENV not in outside.environ()
    finally:
        _kill_all([inside, outside])


def test_watchdog_is_started_once_and_ends_with_its_parent(tmp_path):
    script = tmp_path / "twice.py"
    script.write_text(textwrap.dedent('''
        import os, psutil
        from ttcrouter import lifetime
        assert lifetime.ensure_children_die_with_parent()
        with lifetime.reap_children_on_exit():
            assert os.environ[lifetime.MARKER_ENV].startswith(f"{os.getpid()}-")
            with lifetime.reap_children_on_exit():  # nested: one watchdog, one token
                assert "," not in os.environ[lifetime.MARKER_ENV]
        assert lifetime.MARKER_ENV not in os.environ
        assert lifetime.ensure_children_die_with_parent()
        kids = psutil.Process().children()
        assert len(kids) == 1
        print(kids[0].pid)
    '''))
    out = subprocess.run([sys.executable, str(script)], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    try:
        watchdog = psutil.Process(int(out.stdout))
    except psutil.NoSuchProcess:
        return  # already gone
    assert _wait_gone([watchdog], 5) is not None


def test_everything_started_after_mark_is_adopted(tmp_path):
    script = tmp_path / "mark.py"
    script.write_text(textwrap.dedent('''
        import subprocess, sys, time
        from ttcrouter.lifetime import ensure_children_die_with_parent
        ensure_children_die_with_parent(mark=True)
        c = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env={})
        print(c.pid, flush=True)
        time.sleep(600)
    '''))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    child = psutil.Process(int(proc.stdout.readline()))
    try:
        time.sleep(1.5)  # the watchdog adopts it at its next look
        proc.kill()
        proc.wait()
        assert _wait_gone([child], 10) is not None
    finally:
        _kill_all([child])


def test_watchdog_survives_noise_but_not_its_work(tmp_path):
    """A Ctrl-C sent to the parent's process group does not reach the watchdog."""
    script = tmp_path / "int.py"
    # a parent that dies of Ctrl-C: a SIG_IGN inherited from this process (something in
    # the suite leaves SIGINT ignored) would make Python skip its KeyboardInterrupt handler
    script.write_text(textwrap.dedent('''
        import signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from ttcrouter.lifetime import reap_children_on_exit
        with reap_children_on_exit():
            c = subprocess.Popen([sys.executable, "-c",
                                  "import signal, time; signal.signal(signal.SIGINT, "
                                  "signal.SIG_IGN); time.sleep(600)"])
        print(c.pid, flush=True)
        time.sleep(600)
    '''))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    child = psutil.Process(int(proc.stdout.readline()))
    try:
        os.killpg(proc.pid, signal.SIGINT)  # the parent dies of KeyboardInterrupt
        proc.wait(timeout=30)
        assert _wait_gone([child], 10) is not None
    finally:
        _kill_all([child])


# ---------------------------------------------------------------------------------------
# stale engines
# ---------------------------------------------------------------------------------------

STALE = textwrap.dedent('''
    import subprocess, sys, time
    from ttcrouter.lifetime import reap_children_on_exit, record_engine_pids
    with reap_children_on_exit():
        early = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record_engine_pids(sys.argv[1])
    with reap_children_on_exit():  # an engine started after the record
        late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(early.pid, late.pid, flush=True)
    time.sleep(600)
''')


def test_live_engine_pids_names_the_processes_of_an_earlier_run(tmp_path):
    script = tmp_path / "stale.py"
    script.write_text(STALE)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=_env(),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    early, late = map(int, proc.stdout.readline().split())
    kids = [psutil.Process(early), psutil.Process(late)]
    watchdog = [p for p in psutil.Process(proc.pid).children() if p.pid not in (early, late)]
    try:
        record = json.loads((tmp_path / lifetime.ENGINE_PIDS_FILE).read_text())
        assert sorted(p["pid"] for p in record["processes"]) == sorted([early, late])
        assert {proc.pid, early, late} <= set(live_engine_pids(tmp_path))
        # the watchdog would end them at once: stop it, as if the run's watchdog died too
        _kill_all(watchdog)
        proc.kill()
        proc.wait()
        assert live_engine_pids(tmp_path) == sorted([early, late])
        _kill_all(kids)
        assert _wait_gone(kids, 5) is not None
        assert live_engine_pids(tmp_path) == []
    finally:
        _kill_all(kids + watchdog)


def test_live_engine_pids_ignores_reused_pids_and_bad_records(tmp_path):
    assert live_engine_pids(tmp_path) == []  # nothing recorded
    (tmp_path / lifetime.ENGINE_PIDS_FILE).write_text("{not json")
    assert live_engine_pids(tmp_path) == []
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    try:
        p = psutil.Process(other.pid)
        # a live pid with another start time: a reused pid, not the recorded engine
        record = {"owner": {"pid": 1, "started": "12.00"},
                  "host": lifetime.socket.gethostname(),
                  "processes": [{"pid": p.pid, "started": f"{p.create_time() - 5:.2f}"}]}
        (tmp_path / lifetime.ENGINE_PIDS_FILE).write_text(json.dumps(record))
        assert live_engine_pids(tmp_path) == []
        record["processes"][0]["started"] = f"{p.create_time():.2f}"
        (tmp_path / lifetime.ENGINE_PIDS_FILE).write_text(json.dumps(record))
        assert live_engine_pids(tmp_path) == [p.pid]
        record["host"] = "elsewhere"
        (tmp_path / lifetime.ENGINE_PIDS_FILE).write_text(json.dumps(record))
        assert live_engine_pids(tmp_path) == []
    finally:
        other.kill()
        other.wait()


def test_own_record_is_not_stale(tmp_path):
    script = "import sys; from ttcrouter.lifetime import record_engine_pids, live_engine_pids; " \
             "assert record_engine_pids(sys.argv[1]); assert live_engine_pids(sys.argv[1]) == []"
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------------------
# a real engine: kill `ttcrouter route` / `ttcrouter collect` once it runs
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def router_file(tmp_path_factory):
    from ttcrouter.cli import main
    from ttcrouter.runs import write_runs
    from ttcrouter.synthetic import make_synthetic_runs

    d = tmp_path_factory.mktemp("lifetime-router")
    runs = make_synthetic_runs(24, strategies=["majority_vote@n=1", "majority_vote@n=2"],
                               repeats=1, random_state=0)
    write_runs(runs, d / "runs.parquet", provenance={"synthetic": True})
    assert main(["fit", str(d / "runs.parquet"), "--out", str(d / "r.joblib"),
                 "--encoder", "minilm"]) == 0
    return d / "r.joblib"


def _is_worker(p):
    try:
        return "VLLM::Worker" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _signal_when_engine_runs(argv, log_path, sig, ready_line=None):
    """Run ``argv``; once its engine's worker exists (and ``ready_line`` is in its log), send
    ``sig``. Returns (exit code, seconds until its tree was gone or None, log text)."""
    env = _env()
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    parent = psutil.Process(proc.pid)
    tree = []
    try:
        deadline = time.monotonic() + 600
        while not (any(_is_worker(p) for p in parent.children(recursive=True))
                   and (ready_line is None or ready_line in Path(log_path).read_text())):
            assert proc.poll() is None, Path(log_path).read_text()[-3000:]
            assert time.monotonic() < deadline, "the engine did not start in 600 s"
            time.sleep(0.2)
        tree = parent.children(recursive=True)
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        gone = _wait_gone(tree, 10)
        return rc, gone, [p.pid for p in tree if _alive(p)], Path(log_path).read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_all(tree)


@pytest.mark.slow
@pytest.mark.vllm
def test_sigkill_of_route_leaves_no_engine(router_file, tmp_path):
    argv = [sys.executable, "-m", "ttcrouter.cli", "route", "--router", str(router_file),
            "What is 2 + 2?"]
    rc, gone, alive, log = _signal_when_engine_runs(argv, tmp_path / "route.log",
                                                    signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert gone is not None, f"engine processes alive 10 s after SIGKILL: {alive}"
    assert "ended the" in log  # the watchdog's report


@pytest.mark.slow
@pytest.mark.vllm
def test_sigterm_of_route_shuts_the_engine_down_cleanly(router_file, tmp_path):
    questions = tmp_path / "q.txt"  # enough work that the engine is busy when SIGTERM comes
    questions.write_text("".join(f"What is {i} + {i}?\n" for i in range(200)))
    argv = [sys.executable, "-m", "ttcrouter.cli", "route", "--router", str(router_file),
            "--file", str(questions), "--max-tokens", "64"]
    rc, gone, alive, log = _signal_when_engine_runs(argv, tmp_path / "route.log",
                                                    signal.SIGTERM, ready_line="init engine")
    assert rc == 143
    assert gone is not None, f"engine processes alive 10 s after SIGTERM: {alive}"
    assert "shutting down" in log
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.vllm
def test_sigkill_of_collect_leaves_no_engine(tmp_path):
    argv = [sys.executable, "-m", "ttcrouter.cli", "collect", "arithmetic:4",
            "--strategies", "majority_vote@n=2", "--max-tokens", "8", "--eager",
            "--kv-cache-gb", "2", "--out", str(tmp_path / "runs"), "--no-progress"]
    rc, gone, alive, log = _signal_when_engine_runs(argv, tmp_path / "collect.log",
                                                    signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert gone is not None, f"engine processes alive 10 s after SIGKILL: {alive}"


def test_exit_cleanly_on_sigterm_restores_the_handler_and_skips_other_threads():
    import threading

    from ttcrouter.lifetime import exit_cleanly_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with exit_cleanly_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    seen = []

    def in_thread():
        with exit_cleanly_on_sigterm():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == [before]


def test_a_forked_child_does_not_rewrite_its_parents_record(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent('''
        import json, multiprocessing as mp, os, sys
        from ttcrouter.lifetime import reap_children_on_exit, record_engine_pids

        def child():
            with reap_children_on_exit():  # would rewrite the records it inherited
                pass

        record_engine_pids(sys.argv[1])
        p = mp.get_context("fork").Process(target=child)
        p.start()
        p.join()
        record = json.loads(open(os.path.join(sys.argv[1], "engine-pids.json")).read())
        assert record["owner"]["pid"] == os.getpid(), record
    '''))
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
