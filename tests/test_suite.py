"""The suite's own machinery: what `scripts/test` relies on to run in minutes."""

import pytest


@pytest.mark.xdist_group("walkthroughs")
def test_xdist_groups_keep_their_tests_on_one_worker(request):
    """Under `--dist loadgroup` (scripts/test) pytest-xdist sends a group's tests to one worker by adding
    the group to their ids; where that stops (pytest 9 with pytest-xdist 3.8), every group's shared
    compiles and processes are paid once per worker."""
    if not getattr(request.config.option, "loadgroup", False):  # set on pytest-xdist workers under --dist loadgroup
        pytest.skip("not run by scripts/test (pytest-xdist with --dist loadgroup)")
    assert request.node.nodeid.endswith("@walkthroughs"), request.node.nodeid
