"""``audit export`` from the embedded broker in chunks of 250: the same CODE.json as the export
built from the whole log read at once, and it checks out with chain.py alone."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lienthong.services.audit import chain
from lienthong.services.audit.export import export_kafka
from lienthong.services.audit.verify import read_log
from lienthong.services.cli import main as cli_main
from tests.integration.hub import Hub
from tests.integration.test_audit_verify_stream import produce
from tests.unit.test_audit_export_stream import DOSSIERS, PUBLIC, build, log, reference

pytestmark = pytest.mark.kafka


def test_an_export_streamed_in_chunks_of_250_is_the_export_of_the_whole_log(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Dossier 0 is every 113th entry of partition 1 from entry 40 on, among 2,400 entries of
    # other dossiers; partition 0 holds none of it, partition 2 holds some (never read).
    chains = {0: build(0, [1, 2, None] * 300),
              1: build(1, [0 if i % 113 == 40 else 1 + i % 2 for i in range(2_400)]),
              2: build(2, [0, 2] * 50)}
    copy = log(chains, [{0: 899, 1: 1_000, 2: 99}, {0: 899, 1: 2_399, 2: 99}])
    hub = Hub(kafka_bootstrap, tmp_path, partitions=3)
    hub.create_topics()
    produce(hub, chains, copy.checkpoints)
    n = hub.names
    whole = reference(read_log(kafka_bootstrap, n.audit_log, n.audit_checkpoints), DOSSIERS[0],
                      PUBLIC)
    assert whole["partition"] == 1 and len(whole["records"]) == 21  # 40 + 113 k ≤ 2,399
    assert len(whole["segment"]["links"]) == 2_400 - 40

    with export_kafka(kafka_bootstrap, n.audit_log, n.audit_checkpoints, DOSSIERS[0], PUBLIC,
                      chunk_entries=250) as export:
        out = io.StringIO()
        export.write_json(out)
    assert out.getvalue() == json.dumps(whole, ensure_ascii=False, indent=1)

    # The command writes that document too (chunks of 20,000 here), and chain.py accepts it.
    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", hub.prefix)
    code = cli_main(["audit", "export", "--bootstrap", kafka_bootstrap, "--dossier",
                     DOSSIERS[0], "--public-key", PUBLIC["ed25519"], "--out",
                     str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.splitlines()[-1].startswith(f"audit export: 21 records of "
                                                    f"{DOSSIERS[0]} written to ")
    written = tmp_path / "out" / f"{DOSSIERS[0]}.json"
    # Given by --public-key alone, the key is named as the checkpoint names its signer.
    assert json.loads(written.read_text()) == whole
    result = subprocess.run([sys.executable, str(Path(chain.__file__)), str(written)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("OK dossier"), result.stdout
