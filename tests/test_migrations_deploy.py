"""Migrations run on every `sam deploy` that changes them, with no hand-edited version.

RunMigrations (the custom resource) carries the Shared layer's version ARN. The layer holds
upgrader/infra/migrations/*.sql, and SAM publishes a new layer version whenever the layer's content
changes; CloudFormation then sees a changed property and sends an Update, which applies the files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import upgrader.infra.migrate as migrate
from upgrader.infra.migrate import migration_files

from tests.support.sam import sam_transform
from tests.support.template import ROOT, functions_by_folder, load_template, resources_of

MIGRATIONS = Path(migrate.__file__).resolve().parent / "migrations"


def migrations_resource(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The custom resource whose ServiceToken is the migrate function."""
    migrate_id, _ = functions_by_folder(template)["migrate"]
    (found,) = [
        (name, res)
        for name, res in template["Resources"].items()
        if res["Type"].startswith("Custom::")
        and res["Properties"]["ServiceToken"] == {"Fn::GetAtt": [migrate_id, "Arn"]}
    ]
    return found


def layer_holding_the_migrations(template: dict[str, Any]) -> str:
    layers = [
        name
        for name, res in resources_of(template, "AWS::Serverless::LayerVersion").items()
        if MIGRATIONS.is_relative_to((ROOT / res["Properties"]["ContentUri"]).resolve())
    ]
    assert len(layers) == 1, f"expected one layer containing {MIGRATIONS}, found {layers}"
    return layers[0]


def test_the_migration_files_are_in_a_layer_the_migrate_function_loads() -> None:
    template = load_template()
    layer = layer_holding_the_migrations(template)
    _, migrate_function = functions_by_folder(template)["migrate"]

    assert migration_files(), "no migrations shipped"
    assert {"Ref": layer} in migrate_function["Properties"]["Layers"]


def test_run_migrations_changes_with_the_layer_version_and_no_hand_edited_value() -> None:
    template = load_template()
    _, resource = migrations_resource(template)
    properties = {k: v for k, v in resource["Properties"].items() if k != "ServiceToken"}

    assert {"Ref": layer_holding_the_migrations(template)} in properties.values()
    hand_edited = [k for k, v in properties.items() if v in [{"Ref": p} for p in template.get("Parameters", {})]]
    assert hand_edited == [], f"properties fed by a parameter someone must remember to change: {hand_edited}"


def test_sam_gives_run_migrations_a_new_value_when_the_layer_content_changes() -> None:
    # Given the template as `sam package` leaves it (layer content uploaded under its checksum) ...
    template = load_template()
    layer = layer_holding_the_migrations(template)
    before, after, unchanged = (copy.deepcopy(template) for _ in range(3))
    before["Resources"][layer]["Properties"]["ContentUri"] = "s3://artifacts/3f1e0c.zip"
    unchanged["Resources"][layer]["Properties"]["ContentUri"] = "s3://artifacts/3f1e0c.zip"
    after["Resources"][layer]["Properties"]["ContentUri"] = "s3://artifacts/9a72bd.zip"  # a migration added

    # When SAM transforms them
    out_before, out_after, out_unchanged = sam_transform([before, after, unchanged])

    # Then RunMigrations points at a new layer version only when the content changed
    name, resource = migrations_resource(template)
    (key,) = [k for k, v in resource["Properties"].items() if v == {"Ref": layer}]
    value_before = out_before["Resources"][name]["Properties"][key]
    assert value_before != out_after["Resources"][name]["Properties"][key]
    assert value_before == out_unchanged["Resources"][name]["Properties"][key]
    assert out_before["Resources"][value_before["Ref"]]["Type"] == "AWS::Lambda::LayerVersion"
