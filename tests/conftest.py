"""Shared fixtures, and the order in which test files start.

``make test`` runs three files at a time (pytest-xdist, ``--dist loadscope``: a
file's tests on one worker, so its module fixtures are built once). Files
start longest first, by the seconds ``tests/module_seconds.json`` records
for them, so the last ones to start are short and the workers end together;
xdist's own order (most tests first) started the three longest files last.
A file the record does not know starts first: a new file may be a long one.
``pytest --record-module-seconds tests/module_seconds.json`` measures the
record again. Run one at a time, the files keep their usual order.
"""

import json
import math
import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest

MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
_measured: dict[str, float] = defaultdict(float)


def pytest_addoption(parser):
    parser.addoption("--record-module-seconds", metavar="PATH",
                     help="write each test file's seconds (set-up, call, tear-down) to PATH")


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    recorded = json.loads(MODULE_SECONDS.read_text()) if MODULE_SECONDS.is_file() else {}
    # a stable sort: each file's tests stay together and in their order
    items.sort(key=lambda item: -recorded.get(item.nodeid.split("::")[0], math.inf))


def pytest_runtest_logreport(report):
    _measured[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session):
    path = session.config.getoption("record_module_seconds")
    if path and not os.environ.get("PYTEST_XDIST_WORKER"):  # xdist's controller sees all
        Path(path).write_text(json.dumps(
            {module: round(seconds, 1) for module, seconds in
             sorted(_measured.items(), key=lambda entry: -entry[1])}, indent=1) + "\n")


@pytest.fixture(autouse=True)
def sigint_as_in_a_terminal():
    """Each test, and every process it starts, gets SIGINT at Python's default, as a
    terminal's foreground job has it. A suite started in the background (``make test
    &`` from a script, some CI runners) inherits SIGINT ignored, an ignored signal
    stays ignored across exec, and a child would then never see the Ctrl-C a test
    sends it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A COCO-format copy of the built-in dataset, 8 train, 4 val and 4 test images; read-only."""
    from brefine.data.synthetic import write_synthetic_dataset

    return str(write_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=8,
                                       val_images=4, test_images=4))
