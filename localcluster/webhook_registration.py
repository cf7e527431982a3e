"""Registers the data plane's Seldon validating webhook with the local API server.

The data plane serves Seldon Core's SeldonDeployment rules (``localcluster.dataplane.webhook``) over HTTPS on
loopback with a certificate issued here from the local cluster's CA (``.localcluster/pki``, made by
``localcluster.controlplane``) for IP 127.0.0.1. ``register(port)`` waits until that server answers over
verified TLS, then creates or updates the ValidatingWebhookConfiguration so the API server sends it every
CREATE and UPDATE of a SeldonDeployment (v1, v1alpha2, v1alpha3), and waits until the API server enforces it.

failurePolicy is Fail, as Seldon's own chart sets it: while the registration points at a webhook that does
not answer, SeldonDeployment writes are refused ("failed calling webhook"), never let through unchecked.
So ``localcluster.services`` registers after the data plane listens (``up``, with the current port; a
reused healthy data plane is re-registered, in case the API server lost it) and unregisters before it
stops (``down``): between ``down`` and the next ``up`` SeldonDeployments are written without Seldon's
rules, as on a cluster without Seldon Core. Only a data plane that dies without ``down`` leaves writes
failing, until ``services up`` replaces it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import controlplane
from localcluster.dataplane import webhook

PKI = controlplane.STATE_DIR / "pki"
CONFIGURATION_NAME = "seldon-validating-webhook-configuration"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
TIMEOUT_SECONDS = 5
ENFORCED_DEADLINE_S = 30.0
# Refused by the rules ("Graph contains no predictors"), accepted by the CRD's schema: the API server has
# the registration in effect once a server-side dry run of this is refused by the webhook.
PROBE = {"apiVersion": f"{webhook.GROUP}/v1", "kind": webhook.KIND,
         "metadata": {"name": "seldon-webhook-probe"}, "spec": {"predictors": []}}


# ---------------------------------------------------------------- certificate


def certificate_paths(pki: Path = PKI) -> tuple[Path, Path]:
    return pki / "seldon-webhook.crt", pki / "seldon-webhook.key"


def _issued_by_ca(cert: Path, pki: Path) -> bool:
    result = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(cert)],
                            capture_output=True, text=True)
    return result.returncode == 0  # also fails once it has expired


def ensure_certificate(pki: Path = PKI) -> tuple[Path, Path]:
    """The webhook's serving certificate and key, issued from the local cluster's CA for IP 127.0.0.1
    (and localhost); reused while that CA still verifies it."""
    cert, key = certificate_paths(pki)
    if not (pki / "ca.key").exists():
        raise controlplane.ControlPlaneError(f"no local cluster CA in {pki}: run `make cluster-up` first")
    with open(pki / ".seldon-webhook.lock", "w") as lock:  # two `up`s at once issue it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert.exists() and key.exists() and _issued_by_ca(cert, pki):
            return cert, key
        ext = pki / "seldon-webhook.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n")
        new_key, csr, new_cert = (pki / f"seldon-webhook.new.{suffix}" for suffix in ("key", "csr", "crt"))
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(new_key), "-out", str(csr),
                        "-subj", "/CN=seldon-webhook.localcluster"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
                        "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650", "-out", str(new_cert),
                        "-extfile", str(ext)], check=True, capture_output=True)
        os.chmod(new_key, 0o600)
        new_key.replace(key)
        new_cert.replace(cert)
        csr.unlink(missing_ok=True)
    return cert, key


def dataplane_args(port: int, pki: Path = PKI) -> list[str]:
    """The data plane's command-line options that make it serve the webhook on this port."""
    cert, key = ensure_certificate(pki)
    return ["--webhook-port", str(port), "--webhook-cert", str(cert), "--webhook-key", str(key)]


def _ca_context(pki: Path = PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.crt"))


def url(port: int) -> str:
    return f"https://127.0.0.1:{port}{webhook.PATH}"


def answers(port: int) -> bool:
    """The webhook answers on this port over TLS verified against the local CA (hostname 127.0.0.1)."""
    return port > 0 and controlplane.answers(f"https://127.0.0.1:{port}{webhook.HEALTH_PATH}",
                                             context=_ca_context())


# ---------------------------------------------------------------- the configuration


def configuration(port: int, pki: Path = PKI) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration, as Seldon's chart writes it but with a loopback URL."""
    ca_bundle = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    not_another_controller = {"matchExpressions": [{"key": "seldon.io/controller-id", "operator": "DoesNotExist"}]}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": {"app": "seldon", "app.kubernetes.io/managed-by":
                                                            "localcluster.services"}},
        "webhooks": [{
            "name": webhook.WEBHOOK_NAME,
            "clientConfig": {"url": url(port), "caBundle": ca_bundle},
            "rules": [{"apiGroups": [webhook.GROUP], "apiVersions": ["v1", "v1alpha2", "v1alpha3"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["seldondeployments"], "scope": "*"}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": TIMEOUT_SECONDS,
            # As the chart installs it cluster-wide: objects and namespaces claimed by another Seldon
            # controller (label seldon.io/controller-id) are not this webhook's.
            "namespaceSelector": not_another_controller,
            "objectSelector": not_another_controller,
        }],
    }


def _contains(actual: Any, wanted: Any) -> bool:
    """``actual`` holds everything ``wanted`` says (the API server may add defaults)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(
            _contains(a, w) for a, w in zip(actual, wanted, strict=True))
    return bool(actual == wanted)


def _api(method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """One request to the local API server as its admin; (status, JSON body) also for error statuses."""
    state = controlplane.State.load()
    if state is None:
        raise controlplane.ControlPlaneError("no local cluster is running")
    context = _ca_context()
    context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(state.server + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw.decode(errors="replace")[:500]}
    return status, decoded if isinstance(decoded, dict) else {}


def _apply(desired: dict[str, Any]) -> bool:
    """Create or replace the configuration; False when it was already as desired."""
    for _ in range(5):  # a conflicting writer (another `up`) makes us read again
        status, current = _api("GET", f"{CONFIGURATIONS}/{CONFIGURATION_NAME}")
        if status == 200 and _contains(current, desired):
            return False
        if status == 200:
            body = {**desired, "metadata": {**desired["metadata"],
                                            "resourceVersion": current["metadata"]["resourceVersion"]}}
            status, answer = _api("PUT", f"{CONFIGURATIONS}/{CONFIGURATION_NAME}", body)
        elif status == 404:
            status, answer = _api("POST", CONFIGURATIONS, desired)
        else:
            raise controlplane.ControlPlaneError(
                f"reading the webhook configuration: {status} {current.get('message')}")
        if status in (200, 201):
            return True
        if status != 409:
            raise controlplane.ControlPlaneError(f"writing the webhook configuration: {status} {answer.get('message')}")
    raise controlplane.ControlPlaneError("writing the webhook configuration: conflicts did not stop")


def wait_enforced(deadline_s: float = ENFORCED_DEADLINE_S) -> None:
    """Until the API server sends SeldonDeployment writes to the webhook (it picks registrations up
    asynchronously): a server-side dry run of an invalid one must be refused by it."""
    path = f"/apis/{webhook.GROUP}/v1/namespaces/default/seldondeployments?dryRun=All"
    last = ""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, answer = _api("POST", path, PROBE)
        if status == 404 and "namespaces" not in str(answer.get("message")):  # no such resource: no CRD
            controlplane.log("the SeldonDeployment CRD is not installed: the webhook is registered, not yet probed")
            return
        message = str(answer.get("message", ""))
        if status == 422 and f'admission webhook "{webhook.WEBHOOK_NAME}" denied the request' in message:
            return
        last = f"{status} {message[:300]}"
        time.sleep(0.2)
    raise controlplane.ControlPlaneError(f"the API server does not enforce the Seldon webhook after "
                                         f"{deadline_s:.0f}s; last dry run: {last}")


def register(port: int, deadline_s: float = 60.0) -> None:
    """Point the API server at the webhook on this port, once it answers; return when it is enforced."""
    controlplane.wait_until(lambda: answers(port), f"the Seldon webhook on port {port}", deadline_s)
    if _apply(configuration(port)):
        controlplane.log(f"Seldon validating webhook registered at {url(port)}")
    wait_enforced()


def unregister() -> None:
    """Remove the registration (nothing to do when it is absent or the API server is gone)."""
    with contextlib.suppress(controlplane.ControlPlaneError, OSError):
        status, answer = _api("DELETE", f"{CONFIGURATIONS}/{CONFIGURATION_NAME}", timeout=5)
        if status not in (200, 202, 404):
            controlplane.log(f"removing the Seldon webhook registration: {status} {answer.get('message')}")
