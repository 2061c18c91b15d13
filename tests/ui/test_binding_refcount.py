"""The Qt binding must not leak or drop references to None on the paths the window runs all day.

PySide6/shiboken 6.12.0 on CPython 3.11 dropped one reference to None every time C++ called a
Python override that returned None, and about three per `run_in_executor` completion on the qasync
loop; None's count reached zero within minutes and Python aborted ("none_dealloc"). pyproject.toml
caps PySide6 below that release; this test fails if whatever binding is installed has the bug, so
an upgrade cannot bring it back unnoticed. It runs in a child process because a binding with the
bug corrupts the interpreter that measures it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson

CALLS = 2000
#: A healthy binding moves None's count by a handful at most (a cached object, a frame); the bug
#: moved it by one or more per call.
TOLERANCE = 100

PROBE = textwrap.dedent(f"""
    import asyncio, sys
    from concurrent.futures import ThreadPoolExecutor
    import orjson, qasync
    from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication([])

    class Model(QAbstractTableModel):
        def rowCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else 3
        def columnCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else 3
        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            return None  # what every model answers for roles it does not handle

    model = Model()
    index = model.index(1, 1)
    before = sys.getrefcount(None)
    for _ in range({CALLS}):
        index.data(Qt.ItemDataRole.ToolTipRole)
    data_delta = sys.getrefcount(None) - before

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    executor = ThreadPoolExecutor(2)

    async def completions():
        start = sys.getrefcount(None)
        for _ in range({CALLS}):
            await loop.run_in_executor(executor, int)
        return sys.getrefcount(None) - start

    with loop:
        executor_delta = loop.run_until_complete(completions())
    executor.shutdown()
    print(orjson.dumps({{"data": data_delta, "executor": executor_delta}}).decode(), flush=True)
    sys.stdout.flush()
    import os
    os._exit(0)  # skip interpreter teardown: a buggy binding may abort there, after we have measured
""")


def test_none_references_stay_balanced_across_calls_from_cpp() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=90, env=env,
                            check=False)
    assert result.returncode == 0, f"probe failed ({result.returncode}): {result.stderr[-2000:]}"
    deltas = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert abs(deltas["data"]) < TOLERANCE, f"model data() returning None moved None's count by {deltas}"
    assert abs(deltas["executor"]) < TOLERANCE, f"run_in_executor on qasync moved None's count by {deltas}"
