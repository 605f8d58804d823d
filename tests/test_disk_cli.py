"""`python -m turbodspy cache ...`: stats, verify, clear, export/import, and import of a real DSPy disk cache."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from turbodspy.clients.cache import OUTPUTS_ARE_MESSAGE_CONTENTS
from turbodspy.clients.disk_cache import DiskCache

sys.path.insert(0, str(Path(__file__).parent))
from _disk_worker import key, record

CLI = "import sys; from turbodspy.cache_cli import main; sys.exit(main(sys.argv[1:]))"


def cache_cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def fill(directory: Path, count: int) -> None:
    cache = DiskCache(directory)
    for n in range(count):
        cache.put(key(n), record(n))
    for n in range(count + 5):
        cache.get(key(n))
    cache.close()


def test_stats_reports_entries_hits_and_savings(tmp_path):
    fill(tmp_path, 12)
    result = cache_cli("--dir", tmp_path, "--json", "stats")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["entries"], stats["hits"], stats["misses"]) == (12, 12, 5)
    assert stats["tokens_saved"] == sum(record(n)["usage"]["total_tokens"] for n in range(12))
    text = cache_cli("stats", env={"TURBODSPY_CACHEDIR": str(tmp_path)})
    assert "entries" in text.stdout and "12" in text.stdout and "tokens_saved" in text.stdout


def test_verify_passes_a_good_store_and_fails_a_damaged_one(tmp_path):
    fill(tmp_path, 50)
    good = cache_cli("--dir", tmp_path, "--json", "verify")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["bad"] == 0
    segment = next(tmp_path.glob("seg-*.tds"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    bad = cache_cli("--dir", tmp_path, "--json", "verify")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["bad"] == 1 and report["entries"] == 49
    assert list((tmp_path / "quarantine").iterdir())


def test_clear_empties_the_store(tmp_path):
    fill(tmp_path, 10)
    assert cache_cli("--dir", tmp_path, "clear").returncode == 0
    assert DiskCache(tmp_path).stats()["entries"] == 0


@pytest.mark.parametrize("name", ["dump.jsonl", "dump.jsonl.gz"])
def test_export_then_import_copies_every_entry(tmp_path, name):
    source, target = tmp_path / "a", tmp_path / "b"
    fill(source, 40)
    exported = cache_cli("--dir", source, "export", tmp_path / name)
    assert exported.returncode == 0, exported.stderr
    assert "exported 40 entries" in exported.stdout
    imported = cache_cli("--dir", target, "import", tmp_path / name)
    assert imported.returncode == 0, imported.stderr
    cache = DiskCache(target)
    assert all(cache.get(key(n)) == record(n) for n in range(40))
    assert cache.stats()["entries"] == 40


def test_import_refuses_a_file_that_is_not_an_export(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    result = cache_cli("--dir", tmp_path / "c", "import", tmp_path / "x.jsonl")
    assert result.returncode == 2
    assert "not a turbodspy cache export" in result.stderr


# --- import-dspy ---------------------------------------------------------------------------------------------


class _ChatServer(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible chat endpoint: answers with the last user message, reversed."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        text = body["messages"][-1]["content"][::-1]
        response = {
            "id": "chatcmpl-" + text[:8],
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(text), "completion_tokens": 3, "total_tokens": len(text) + 3},
        }
        data = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


DSPY_RUN = """
import json, sys
import dspy
base, out = sys.argv[1], {}
for engine in ("auto", "litellm"):
    lm = dspy.LM(f"openai/model-{engine}", api_base=base, api_key="sk-secret-never-on-disk", engine=engine)
    for prompt in ("hello there", "what is two plus two"):
        out[f"{engine}:{prompt}"] = lm(prompt)[0]
print(json.dumps(out))
"""


def test_import_dspy_brings_a_real_dspy_cache_over(tmp_path, chat_server):
    dspy_dir = tmp_path / "dspy"
    run = subprocess.run(
        [sys.executable, "-c", DSPY_RUN, chat_server],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DSPY_CACHEDIR": str(dspy_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout.splitlines()[-1])
    dspy_keys = set()
    for db in dspy_dir.glob("*/cache.db"):
        with sqlite3.connect(db) as conn:
            dspy_keys |= {k for (k,) in conn.execute("SELECT key FROM Cache")}
    assert len(dspy_keys) == 4

    ours = tmp_path / "ours"
    result = cache_cli("--dir", ours, "import-dspy", dspy_dir)
    assert result.returncode == 0, result.stderr
    assert "imported 4 entries" in result.stdout

    cache = DiskCache(ours)
    assert set(cache.keys()) == dspy_keys
    contents = {cache.peek(k)["response"]["choices"][0]["message"]["content"] for k in dspy_keys}
    assert contents == set(answers.values()) == {"ereht olleh", "owt sulp owt si tahw"}
    for k in dspy_keys:
        rec = cache.peek(k)
        text = rec["response"]["choices"][0]["message"]["content"]
        assert rec["usage"]["total_tokens"] == len(text) + 3
        assert rec["model"].startswith("model-")
        if "outputs" in rec:  # DSPy's own engine keeps what it returned: here, the text of the one choice
            assert rec["outputs"] == OUTPUTS_ARE_MESSAGE_CONTENTS and next(iter(rec)) == "outputs"
    assert sum("outputs" in cache.peek(k) for k in dspy_keys) == 2  # the two calls of DSPy's lm15 engine
    assert "sk-secret" not in "".join(p.read_bytes().decode("latin-1") for p in ours.iterdir() if p.is_file())


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_import_dspy_never_runs_code_from_a_tampered_cache(tmp_path):
    diskcache = pytest.importorskip("diskcache")
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    with diskcache.FanoutCache(str(tmp_path / "dspy"), shards=2) as dc:
        dc.set(key(1), _Exploit())
        dc.set(
            key(2),
            {
                "_dspy_format": "dspy-lm15-result-v1",
                "responses": [],
                "outputs": ["hi"],
                "usage": {"total_tokens": 2},
                "cost": 0.5,
                "raw": None,
                "response_model": "m",
            },
        )
        dc.set("not-a-request-key", "whatever")
    result = cache_cli("--dir", tmp_path / "ours", "import-dspy", tmp_path / "dspy")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "imported 1 entries" in result.stdout and "skipped 2" in result.stdout
    rec = DiskCache(tmp_path / "ours").get(key(2))
    assert rec["response"]["choices"][0]["message"]["content"] == "hi"
    assert (rec["cost"], rec["model"]) == (0.5, "m")
    assert DiskCache(tmp_path / "ours").get(key(1)) is None


def test_import_dspy_of_a_directory_without_a_cache_says_so(tmp_path):
    result = cache_cli("--dir", tmp_path / "ours", "import-dspy", tmp_path)
    assert result.returncode == 2
    assert "no diskcache database" in result.stderr
