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


def test_no_function_in_the_package_is_over_80_lines():
    """Long functions hide what they do: every function and method in jaxbp/ fits in 80 lines
    (declarative tables are assignments, not functions, and are not counted)."""
    import ast
    import pathlib

    import jaxbp

    root = pathlib.Path(jaxbp.__file__).parent
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
