"""docs/bad_inputs.md is exactly what the code says today, and every entry is a clean refusal."""

import catalogue


def test_catalogue_matches_the_code_and_every_input_is_refused():
    rows = catalogue.rows()
    assert len(rows) >= 30
    for where, name, result, message in rows:
        assert result in ("ValueError", "TypeError", "exit 2") or (result == "exit 1" and "check failed" in message), \
            (where, name, result)
        assert message and "Traceback" not in message and "\n" not in message.strip(), (where, name, message)
    assert catalogue.DOC.read_text(encoding="utf-8") == catalogue.render(), "run: python tests/catalogue.py"
