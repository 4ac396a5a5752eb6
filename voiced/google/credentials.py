"""Google credentials, loaded once per process (after twistd's fork, from start()).

Sources, first match wins: none at all for the plaintext loopback emulator; the
service-account JSON in VOICED_GOOGLE_CREDENTIALS_JSON, written once to a private
0600 file; the service-account file GOOGLE_APPLICATION_CREDENTIALS names; Application
Default Credentials (gcloud's user login, the GCE metadata server). A
service account signs its own tokens, so nothing here touches the network per call.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Mapping

import google.auth
import google.auth.exceptions
from google.auth.credentials import Credentials
from google.oauth2 import service_account

from voiced.config import ConfigError, Settings
from voiced.lifecycle import note_construction

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
JSON_ENV = "VOICED_GOOGLE_CREDENTIALS_JSON"
_REQUIRED_FIELDS = ("client_email", "private_key", "token_uri")


class CredentialsError(ConfigError):
    pass


@dataclass
class LoadedCredentials:
    #: None when the endpoint is the plaintext emulator.
    credentials: Credentials | None
    #: Where they came from, for the start-up log (never the secret itself).
    source: str
    #: The materialized service-account file, if this process wrote one.
    path: str | None = None

    def discard(self) -> None:
        """Remove the materialized file and its private directory."""
        if self.path:
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
            self.path = None


def load_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> LoadedCredentials:
    environ = os.environ if environ is None else environ
    if settings.google_endpoint and settings.google_insecure:
        return LoadedCredentials(None, "none (plaintext emulator)")
    if settings.google_credentials_json:
        loaded = _from_json(settings.google_credentials_json)
    elif environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        path = environ["GOOGLE_APPLICATION_CREDENTIALS"]
        loaded = LoadedCredentials(_from_file(path), f"GOOGLE_APPLICATION_CREDENTIALS={path}")
    else:
        loaded = LoadedCredentials(_application_default(settings), "application default credentials")
    note_construction("google_credentials")
    return loaded


def check_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """What load_credentials would refuse, found without writing anything (before twistd forks):
    raises CredentialsError with the one-line reason."""
    environ = os.environ if environ is None else environ
    if settings.google_endpoint and settings.google_insecure:
        return
    if settings.google_credentials_json:
        info = _parse_json_key(settings.google_credentials_json)
        try:
            service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
        except (ValueError, TypeError):
            raise CredentialsError(f"{JSON_ENV}: its private_key is not a usable PEM RSA key") from None
    elif environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        _from_file(environ["GOOGLE_APPLICATION_CREDENTIALS"])
    else:
        _application_default(settings)


def _from_file(path: str) -> Credentials:
    try:
        return service_account.Credentials.from_service_account_file(path, scopes=list(SCOPES))
    except OSError as e:
        raise CredentialsError(f"GOOGLE_APPLICATION_CREDENTIALS: cannot read {path}: {e.strerror}") from None
    except (ValueError, TypeError, KeyError):
        raise CredentialsError(f"GOOGLE_APPLICATION_CREDENTIALS: {path} is not a service-account key") from None


def _application_default(settings: Settings) -> Credentials:
    # May probe the GCE metadata server (seconds when absent): acceptable once, at start-up.
    try:
        creds, _ = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError:
        hint = ""
        if settings.google_endpoint and not settings.google_insecure:
            # The usual slip with the emulator: the endpoint is set, plaintext is not.
            hint = (f"; VOICED_GOOGLE_ENDPOINT={settings.google_endpoint} is set: for a plaintext emulator "
                    "also set VOICED_GOOGLE_INSECURE=1")
        raise CredentialsError(
            f"no Google credentials: set {JSON_ENV} or GOOGLE_APPLICATION_CREDENTIALS, or use VOICED_STT=local "
            f"and VOICED_TTS=local{hint}"
        ) from None
    return creds


def _parse_json_key(text: str) -> dict:
    # Error messages name the variable and the problem, never the content: it is a secret.
    try:
        info = json.loads(text)
    except json.JSONDecodeError as e:
        raise CredentialsError(f"{JSON_ENV} is not valid JSON (line {e.lineno}, column {e.colno})") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise CredentialsError(f'{JSON_ENV} must be a service-account key (a JSON object, "type": "service_account")')
    missing = [name for name in _REQUIRED_FIELDS if not info.get(name)]
    if missing:
        raise CredentialsError(f"{JSON_ENV} lacks {', '.join(missing)}")
    return info


def _from_json(text: str) -> LoadedCredentials:
    info = _parse_json_key(text)
    path = _materialize(text)
    try:
        creds = service_account.Credentials.from_service_account_file(path, scopes=list(SCOPES))
    except (ValueError, TypeError):
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        raise CredentialsError(f"{JSON_ENV}: its private_key is not a usable PEM RSA key") from None
    return LoadedCredentials(creds, f"{JSON_ENV} ({info['client_email']})", path)


def _materialize(text: str) -> str:
    """Write the key to a fresh 0700 directory as a 0600 file (tools that need a path can use it)."""
    directory = tempfile.mkdtemp(prefix="voiced-google-")
    path = os.path.join(directory, "service-account.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path
