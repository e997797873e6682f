"""A planted API key reaches no output (issue 10): every stage runs with the Claude backend
against the fake API, whose error replies echo the key back, and then every byte the run left
behind is searched: stdout, stderr, logs, reports, data, caches, DVC's cache and dvc.lock."""

from __future__ import annotations

import secrets

import yaml
from fake_anthropic import fake_anthropic
from helpers import copy_workspace, merge, run_command

# Not shaped like an Anthropic key (a gateway token, say): only redacting the configured key
# itself can keep it out, not the sk-ant- pattern. Drawn per run, so no file holds it before.
FRAGMENT = secrets.token_hex(16)  # a partial print counts as a leak too
PLANTED_KEY = f"gw-{FRAGMENT}-x"


def test_a_planted_key_appears_in_no_output_of_any_stage(trained_pipeline, tmp_path):
    repo = copy_workspace(trained_pipeline, tmp_path / "repo")
    with fake_anthropic() as api:
        # error replies that echo the key: two requests fail for good (one retry each)
        api.script.extend(["500", "500", "529", "529"])
        params = yaml.safe_load((repo / "params.yaml").read_text())
        override = {"enrich": {"backend": "anthropic", "base_url": api.url, "max_retries": 1,
                               "concurrency": 1, "backoff_initial_s": 0.01,
                               "backoff_max_s": 0.05}}
        (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, override)))
        env = {"ANTHROPIC_API_KEY": PLANTED_KEY}
        outputs = [
            run_command(["dvc", "repro", "--force"], repo, timeout=1200, **env),
            run_command(["vlclip", "monitor", "--simulate-drift"], repo, **env),
            run_command(["vlclip", "search", "red soda can"], repo, **env),
        ]
        # a rejected key (401, echoed) stops enrich: fresh prompts, so the cache cannot answer
        api.script.append("401")
        fresh = merge(yaml.safe_load((repo / "params.yaml").read_text()),
                      {"enrich": {"prompt_version": "v-rejected"}})
        (repo / "rejected.yaml").write_text(yaml.safe_dump(fresh))
        rejected = run_command(["vlclip", "enrich", "-p", "rejected.yaml"], repo, check=False,
                               **env)
        assert rejected.returncode != 0 and "[redacted]" in rejected.stderr, rejected.stderr
        outputs.append(rejected)
        sent = {
            seen.headers.get("x-api-key") or seen.headers.get("authorization", "")
            for seen in api.messages()
        }
    assert sent and all(PLANTED_KEY in header for header in sent), "the key was not used"
    report = (repo / "reports/enrich.json").read_text()
    assert '"failed_calls": 2' in report  # the echoing errors were final for two requests

    for result in outputs:
        assert FRAGMENT not in result.stdout and FRAGMENT not in result.stderr
    leaks = [
        path.relative_to(repo)
        for path in repo.rglob("*")
        if path.is_file() and not path.is_symlink() and FRAGMENT.encode() in path.read_bytes()
    ]
    assert not leaks, f"the key was written to {leaks}"
    scanned = {path.relative_to(repo).parts[0] for path in repo.rglob("*") if path.is_file()}
    assert {"dvc.lock", "data", "reports", ".vlclip-cache", ".dvc", "monitoring"} <= scanned
