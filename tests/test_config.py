"""params.yaml validation: bad values stop the run and name the key."""

from pathlib import Path

import pytest
import yaml

from vlclip.config import Params, ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_are_valid_and_offline_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.ingest.source.kind == "synthetic"
    assert params.model.pretrained is None
    assert params.enrich.backend in ("auto", "rule_based")  # auto is offline without a key


def test_missing_file_means_defaults(tmp_path):
    assert load_params(tmp_path / "absent.yaml") == Params()


@pytest.mark.parametrize(
    ("raw", "key", "hint"),
    [
        ({"train": {"epochz": 3}}, "train.epochz", "unknown key"),
        ({"train": {"batch_size": -4}}, "train.batch_size", "greater than 0"),
        ({"train": {"epochs": "many"}}, "train.epochs", "valid integer"),
        ({"ground": {"detector": "yolo"}}, "ground.detector", "'full_image'"),
        ({"index": {"text_weight": 1.5}}, "index.text_weight", "less than or equal to 1"),
        ({"ingest": {"source": {"kind": "nowhere"}}}, "ingest.source", "synthetic"),
        ({"surprise": {}}, "surprise", "unknown key"),
    ],
)
def test_invalid_values_name_the_key(raw, key, hint):
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    message = str(error.value)
    assert key in message
    assert hint in message


def test_missing_catalog_path_is_reported(tmp_path):
    raw = {"ingest": {"source": {"kind": "grocery_store", "root": str(tmp_path / "nope")}}}
    with pytest.raises(ParamsError, match=r"ingest\.source.*root=.*nope"):
        parse_params(raw)
    raw = {
        "ingest": {
            "source": {
                "kind": "table",
                "path": str(tmp_path / "items.csv"),
                "image_root": str(tmp_path),
            }
        }
    }
    with pytest.raises(ParamsError, match=r"path=.*items.csv.*file not found"):
        parse_params(raw)


def test_invalid_yaml_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
    path.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)


def test_cli_stops_before_work_on_bad_params(tmp_path):
    from typer.testing import CliRunner

    from vlclip.cli import app

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"batch_size": 0}}))
    result = CliRunner().invoke(app, ["ingest", "--params", str(path)])
    assert result.exit_code == 2
    assert "train.batch_size" in result.output
    assert not (tmp_path / "data").exists()
