"""The local ingress as Istio and the executor behave, with small fake model servers on loopback.

Feedback goes by the VirtualService's weights like predictions (no header routes it); a refused
connection is retried only on another endpoint of the same predictor; a predictor without a ready
endpoint fails at the mesh (istio_requests_total, never an executor series); the executor series carry
the pod's labels and no namespace.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from localcluster.controlplane import free_port
from localcluster.dataplane.ingress import Ingress
from localcluster.dataplane.routing import (
    EXECUTOR_LABELS,
    ServerSpec,
    compare_answers,
    predicted_classes,
    route_for,
)
from localcluster.dataplane.supervisor import ServerProcess

NAMESPACE = "models"


class FakeSupervisor:
    """ready_endpoints() over a fixed set of 'pods' per predictor."""

    def __init__(self) -> None:
        self.endpoints: dict[str, list[ServerProcess]] = {}
        self.servers: dict[tuple[str, str, str, int], ServerProcess] = {}

    def add(self, predictor: str, port: int, version: str) -> ServerProcess:
        replica = len(self.endpoints.get(predictor, []))
        spec = ServerSpec(NAMESPACE, "digits", predictor, replica, "file:///m", "/m", (), "tmpl", version)
        server = ServerProcess(spec, port, 0, 0, ready=True)
        self.endpoints.setdefault(predictor, []).append(server)
        self.servers[spec.key] = server
        return server

    def ready_endpoints(self, namespace: str, deployment: str, predictor: str) -> list[ServerProcess]:
        return [s for s in self.endpoints.get(predictor, []) if s.ready]


class Model:
    """A model server answering predictions and feedback with the version that answered."""

    def __init__(self, version: str, classes: tuple[int, ...] = (1,), status: int = 200) -> None:
        self.version = version
        self.status = status
        self.classes = classes  # the class of each row it answers
        self.hits: Counter[str] = Counter()

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            service = request.match_info["service"]
            self.hits[service] += 1
            tags = {"served_model_version": self.version}
            return web.json_response({"data": {"ndarray": list(self.classes)}, "meta": {"tags": tags}},
                                     status=self.status)
        app = web.Application()
        app.router.add_post("/api/v1.0/{service}", answer)
        return app


def sdep(*predictors: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "digits", "namespace": NAMESPACE}, "spec": {"predictors": list(predictors)}}


def predictor(name: str, traffic: int, shadow: bool = False) -> dict[str, Any]:
    return {"name": name, "traffic": traffic, "shadow": shadow, "graph": {"name": "classifier"}}


@asynccontextmanager
async def plane(supervisor: FakeSupervisor, seed: int = 3) -> AsyncIterator[tuple[Ingress, str, ClientSession]]:
    ingress = Ingress(supervisor, rng=random.Random(seed))  # type: ignore[arg-type]
    server = TestServer(ingress.app())
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield ingress, str(server.make_url("")).rstrip("/"), session
    finally:
        await server.close()


@asynccontextmanager
async def models(*versions: str, classes: dict[str, tuple[int, ...]] | None = None,
                 failing: tuple[str, ...] = ()) -> AsyncIterator[list[tuple[Model, int]]]:
    started = []
    try:
        for version in versions:
            model = Model(version, (classes or {}).get(version, (1,)), 500 if version in failing else 200)
            server = TestServer(model.app(), port=free_port())
            await server.start_server()
            started.append((model, server))
        yield [(model, server.port or 0) for model, server in started]
    finally:
        for _, server in started:
            await server.close()


async def post(session: ClientSession, base: str, service: str, headers: dict[str, str] | None = None
               ) -> tuple[int, str, dict[str, str]]:
    async with session.post(f"{base}/seldon/{NAMESPACE}/digits/api/v1.0/{service}", json={"data": {}},
                            headers=headers or {}) as resp:
        body = await resp.read()
        try:
            version = json.loads(body)["meta"]["tags"]["served_model_version"]
        except (ValueError, KeyError, TypeError):
            version = ""
        return resp.status, version, dict(resp.headers)


async def text(session: ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


def samples(exposition: str, name: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(exposition) for s in family.samples if s.name == name]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_feedback_goes_by_the_weights_and_no_header_routes_it() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        async with models("1.0.0", "2.0.0") as ((a, a_port), (b, b_port)):
            supervisor.add("a", a_port, "1.0.0")
            supervisor.add("b", b_port, "2.0.0")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("a", 10), predictor("b", 90)))
                answers = [await post(session, base, "feedback", {"Seldon-Predictor": "a"}) for _ in range(400)]
        assert all(status == 200 for status, _, _ in answers)
        assert not any("Seldon-Predictor" in headers for _, _, headers in answers)
        assert a.hits["feedback"] + b.hits["feedback"] == 400
        assert 0.05 <= a.hits["feedback"] / 400 <= 0.15, a.hits  # by weight, not to the predictor named
    run(scenario)


def test_a_refused_connection_is_retried_on_the_same_predictor_only() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        async with models("1.0.0", "2.0.0") as ((_, a_port), (b, b_port)):
            supervisor.add("a", a_port, "1.0.0")
            dead = supervisor.add("b", free_port(), "2.0.0")  # nothing listens: the pod is gone
            supervisor.add("b", b_port, "2.0.0")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("a", 50), predictor("b", 50)))
                answers = [await post(session, base, "predictions") for _ in range(60)]
        assert all(status == 200 for status, _, _ in answers)
        versions = Counter(version for _, version, _ in answers)
        # b's share went to b's live endpoint (the retry), never to a: the split stays about even
        assert versions["2.0.0"] == b.hits["predictions"] and 15 <= versions["2.0.0"] <= 45, versions
        assert dead.ready is False  # out of routing after the refused connection
    run(scenario)


def test_with_no_endpoint_left_the_request_fails_at_the_mesh_never_at_another_predictor() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        async with models("1.0.0") as ((a, a_port),):
            supervisor.add("a", a_port, "1.0.0")
            supervisor.add("b", free_port(), "2.0.0")  # b's only pod refuses connections
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("a", 10), predictor("b", 90)))
                answers = [await post(session, base, "predictions") for _ in range(100)]
                executor = await text(session, f"{base}/metrics/{NAMESPACE}")
                mesh = await text(session, f"{base}/stats/prometheus")
        failed = [a for a in answers if a[0] != 200]
        assert all(status == 503 for status, _, _ in failed) and 70 <= len(failed) <= 98, len(failed)
        assert a.hits["predictions"] == 100 - len(failed)  # a answered its own share only
        counts = samples(executor, "seldon_api_executor_server_requests_seconds_count")
        assert {s.labels["predictor_name"] for s in counts} == {"a"}  # nothing reached b's executor
        assert all(s.labels["code"] == "200" for s in counts)
        by_flags: Counter[str] = Counter()
        for s in samples(mesh, "istio_requests_total"):
            if s.labels["response_code"] == "503":
                assert s.labels["destination_service_name"] == "digits-b"
                assert s.labels["destination_service_namespace"] == NAMESPACE
                assert s.labels["reporter"] == "source"
                # No healthy upstream: no endpoint picked, no workload; a refused connection names the one tried.
                workload = "unknown" if s.labels["response_flags"] == "UH" else "digits-b-0-classifier"
                assert s.labels["destination_workload"] == workload, s.labels
                by_flags[s.labels["response_flags"]] += int(s.value)
        # The first one was refused (connect failure), then b had no ready endpoint: no healthy upstream.
        assert by_flags == {"UF,URX": 1, "UH": len(failed) - 1}, by_flags
    run(scenario)


def test_executor_series_per_namespace_with_the_pods_labels() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        async with models("2.0.0") as ((_, port),):
            supervisor.add("main", port, "2.0.0")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("main", 100)))
                for service in ("predictions", "feedback", "predictions"):
                    await post(session, base, service)
                exposition = await text(session, f"{base}/metrics/{NAMESPACE}")
                other = await text(session, f"{base}/metrics/elsewhere")
                async with session.get(f"{base}/metrics") as bare:
                    assert bare.status == 404
                ingress.forget(NAMESPACE, "digits")
                forgotten = await text(session, f"{base}/metrics/{NAMESPACE}")
        counts = {s.labels["service"]: s
                  for s in samples(exposition, "seldon_api_executor_server_requests_seconds_count")}
        assert {k: v.value for k, v in counts.items()} == {"predictions": 2, "feedback": 1}
        assert set(counts["predictions"].labels) == set(EXECUTOR_LABELS)
        assert counts["predictions"].labels == {"deployment_name": "digits", "predictor_name": "main",
                                                "predictor_version": "2.0.0", "service": "predictions",
                                                "method": "post", "code": "200"}
        assert "namespace" not in exposition and other == "" and forgotten == ""
    run(scenario)


def test_the_mirror_gets_a_copy_of_predictions_and_feedback() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        async with models("1.0.0", "9.9.9") as ((main, main_port), (shadow, shadow_port)):
            supervisor.add("main", main_port, "1.0.0")
            supervisor.add("shadow", shadow_port, "9.9.9")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("main", 100),
                                                                       predictor("shadow", 0, shadow=True)))
                answers = [await post(session, base, service) for service in ("predictions", "feedback") * 5]
                for _ in range(50):
                    if shadow.hits.total() == 10:
                        break
                    await asyncio.sleep(0.02)
        assert {version for _, version, _ in answers} == {"1.0.0"}  # users get main's answers only
        assert main.hits == Counter(predictions=5, feedback=5) == shadow.hits
    run(scenario)


def test_the_mirror_compares_each_prediction_row_with_the_live_answer_and_never_feedback() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        classes = {"1.0.0": (1, 2, 3), "9.9.9": (1, 2, 4)}
        async with models("1.0.0", "9.9.9", classes=classes) as ((_, main_port), (_, shadow_port)):
            supervisor.add("main", main_port, "1.0.0")
            supervisor.add("shadow", shadow_port, "9.9.9")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("main", 100),
                                                                       predictor("shadow", 0, shadow=True)))
                for service in ("predictions", "feedback") * 5:
                    await post(session, base, service)
                for _ in range(100):
                    if sum(ingress.mirror_answers.get(NAMESPACE, {}).values()) == 15:
                        break
                    await asyncio.sleep(0.02)
                exposition = await text(session, f"{base}/metrics/{NAMESPACE}")
                ingress.forget(NAMESPACE, "digits")
                forgotten = await text(session, f"{base}/metrics/{NAMESPACE}")
        compared = {(s.labels["outcome"], s.labels["predictor_name"], s.labels["live_predictor_name"]): s.value
                    for s in samples(exposition, "dataplane_mirror_answers_total")}
        # 5 predictions of 3 rows: 2 rows agree and 1 disagrees each time; feedback is mirrored, not compared.
        assert compared == {("agree", "shadow", "main"): 10.0, ("disagree", "shadow", "main"): 5.0}
        assert "dataplane_mirror_answers_total" not in forgotten
    run(scenario)


def test_a_shadow_that_fails_where_the_live_model_answered_counts_its_rows_as_errors() -> None:
    async def scenario() -> None:
        supervisor = FakeSupervisor()
        classes = {"1.0.0": (1, 2, 3), "9.9.9": (1, 2, 3)}
        async with models("1.0.0", "9.9.9", classes=classes, failing=("9.9.9",)) as ((_, main_port),
                                                                                     (_, shadow_port)):
            supervisor.add("main", main_port, "1.0.0")
            supervisor.add("shadow", shadow_port, "9.9.9")
            async with plane(supervisor) as (ingress, base, session):
                ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("main", 100),
                                                                       predictor("shadow", 0, shadow=True)))
                for _ in range(4):
                    await post(session, base, "predictions")
                for _ in range(100):
                    if sum(ingress.mirror_answers.get(NAMESPACE, {}).values()) == 12:
                        break
                    await asyncio.sleep(0.02)
                compared = dict(ingress.mirror_answers.get(NAMESPACE, {}))
        # Its few answers that would agree never make up for the ones it failed: every row is a trial.
        assert compared == {("digits", "shadow", "main", "error"): 12.0, ("digits", "shadow", "main", "agree"): 0.0,
                            ("digits", "shadow", "main", "disagree"): 0.0}
    run(scenario)


def test_predicted_classes_reads_labels_and_probabilities_and_refuses_anything_else() -> None:
    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    assert predicted_classes(body({"data": {"ndarray": [3, 1]}})) == [3, 1]
    assert predicted_classes(body({"data": {"ndarray": [[3], [1]]}})) == [3, 1]
    assert predicted_classes(body({"data": {"ndarray": [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]}})) == [1, 0]
    for bad in ({"status": {"code": 500}}, {"data": {"ndarray": ["cat"]}}, {"data": {"ndarray": [[]]}},
                {"data": {"ndarray": [[0.93], [0.12]]}}, {"data": {"ndarray": [0.5]}},
                {"data": {"ndarray": 3}}):
        assert predicted_classes(body(bad)) is None
    assert predicted_classes(b"not json") is None
    assert compare_answers(body({"data": {"ndarray": [1, 2]}}), body({"data": {"ndarray": [1]}})) is None
    assert compare_answers(body({"data": {"ndarray": [1, 2]}}), body({"data": {"ndarray": [[0, 1], [1, 0]]}})) \
        == (1, 1)


def test_no_virtual_service_is_a_404_from_the_gateway() -> None:
    async def scenario() -> None:
        async with plane(FakeSupervisor()) as (_, base, session):
            status, _, _ = await post(session, base, "predictions")
            mesh = await text(session, f"{base}/stats/prometheus")
        assert status == 404
        (sample,) = samples(mesh, "istio_requests_total")
        assert (sample.labels["response_code"], sample.labels["response_flags"]) == ("404", "NR")
    run(scenario)


def test_a_reset_connection_is_a_503_at_the_mesh_not_retried_and_not_an_executor_answer() -> None:
    async def scenario() -> None:
        async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()  # accepts, then resets: the pod died under the request

        dropping = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = dropping.sockets[0].getsockname()[1]
        supervisor = FakeSupervisor()
        try:
            async with models("1.0.0") as ((a, a_port),):
                supervisor.add("a", a_port, "1.0.0")
                supervisor.add("b", port, "2.0.0")
                async with plane(supervisor) as (ingress, base, session):
                    ingress.routes[(NAMESPACE, "digits")] = route_for(sdep(predictor("a", 0), predictor("b", 100)))
                    status, _, _ = await post(session, base, "predictions")
                    executor = await text(session, f"{base}/metrics/{NAMESPACE}")
                    mesh = await text(session, f"{base}/stats/prometheus")
        finally:
            dropping.close()
        assert status == 503 and a.hits.total() == 0 and executor == ""
        (sample,) = samples(mesh, "istio_requests_total")
        assert (sample.labels["response_flags"], sample.labels["destination_workload"]) == (
            "UC", "digits-b-0-classifier")
    run(scenario)
