from __future__ import annotations

import pytest

from tests.conftest import SHARED_DATA, shared_file

NEEDED = (
    "nas-bench-201-accuracy/nb201_test_accuracy.csv",
    "help-latency/nasbench201_latency_ms.csv",
    "hw-nas-bench-360/dataset.csv.gz",
)


@pytest.fixture(scope="session")
def data_dir():
    """``../shared/data`` with the three NB201 tables; tests using it skip when one is absent."""
    for relative in NEEDED:
        shared_file(relative)
    return SHARED_DATA


@pytest.fixture(scope="session")
def problem2(data_dir):
    from nas.bench import load_problem

    return load_problem("nasbench201", "cifar10", ["error", "latency_ms@pixel3"], data_dir)


@pytest.fixture(scope="session")
def problem3(data_dir):
    from nas.bench import load_problem

    return load_problem(
        "nasbench201", "cifar100", ["accuracy", "latency_ms@raspi4", "energy_mj@pi5"], data_dir
    )
