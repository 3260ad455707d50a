"""The README's API snippet runs as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_snippet_runs(capsys):
    text = README.read_text()
    section = text.split("## The API researchers use", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "loss per seed" in out
    assert namespace["metrics"]["loss"].shape == (4,)
    recs = namespace["predict"].recommend(namespace["model"], namespace["state"].params,
                                          namespace["enc"], namespace["history"], k=5,
                                          exclude_seen=True)
    assert len(recs) == 5
    assert not set(recs) & {i for s in namespace["history"] for i in s}
    assert "recall@5" in out
