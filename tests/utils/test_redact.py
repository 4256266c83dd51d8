"""Credentials are hidden in what a run records about itself."""

from __future__ import annotations

from medunet.utils.redact import redact_credentials


def test_passwords_in_uris_and_secret_keys_are_hidden() -> None:
    config = {
        "tracking_uri": "http://alice:s3cret@mlflow.local:5000/",
        "nested": [{"url": "https://bob:pw%40x@host/dicom-web", "password": "hunter2", "token": ""}],
        "plain": "http://host:8042/dicom-web",
        "sqlite": "sqlite:////data/run/mlflow.db",
        "numbers": (1, 2.5, None),
        "user_only": "http://carol@host/",
    }
    assert redact_credentials(config) == {
        "tracking_uri": "http://alice:***@mlflow.local:5000/",
        "nested": [{"url": "https://bob:***@host/dicom-web", "password": "***", "token": ""}],
        "plain": "http://host:8042/dicom-web",
        "sqlite": "sqlite:////data/run/mlflow.db",
        "numbers": (1, 2.5, None),
        "user_only": "http://carol@host/",
    }
