"""The HTTP API (FastAPI on uvicorn): thin routes over the served model; docs/serve.md.

`create_app(cfg)` builds the app with its own `Server` (model manager, run watcher, speed layer,
metrics), started and stopped by the app's lifespan. Every route takes `manager.current` once
and lets the model answer; the routes only translate HTTP (ids from the path, `n` bounded,
errors as 400/401/404/503 with a one-line `detail`). Answers are serialised with orjson.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from recsys_contract.config import AppConfig
from recsys_contract.validation import Limits
from serve.files import ResultsReader, open_results
from serve.manager import ModelManager, RunWatcher
from serve.metrics import UNMATCHED, ServeMetrics
from serve.model import Answer, ServingModel
from serve.speed import SpeedLayer

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTOR = re.compile(r":\w+}")  # {user_id:path} -> {user_id} in the route label
_JSON = "application/json"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- response shapes (for the OpenAPI document; answers are built as plain dicts) -------------


class Item(BaseModel):
    product_id: str
    score: float


class Recommendations(BaseModel):
    user_id: str
    run_id: str
    source: Literal["model", "fold_in", "popular"]
    items: list[Item]


class Similar(BaseModel):
    product_id: str
    run_id: str
    items: list[Item]


class Popular(BaseModel):
    run_id: str
    source: Literal["popular"]
    items: list[Item]


class FoldIn(BaseModel):
    users: int
    events: int


class LatestRun(BaseModel):
    run_id: str
    created_at: str
    loaded_at: str
    reason: str
    events: dict[str, Any]
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    fold_in: FoldIn


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    run_id: str | None


class Problem(BaseModel):
    detail: str


# --- the server: what the routes answer from -----------------------------------------------------


class Server:
    """The model manager, the run watcher and the speed layer of one app."""

    def __init__(self, cfg: AppConfig, reader: ResultsReader) -> None:
        self.metrics = ServeMetrics()
        self.manager = ModelManager(self.metrics)
        self.speed: SpeedLayer | None = None
        handoff: Callable[[ServingModel], None] = self.manager.swap
        if cfg.serve.fold_in:
            self.speed = SpeedLayer(
                bootstrap_servers=cfg.kafka.bootstrap_servers,
                topic=cfg.kafka.topic,
                group_id=cfg.serve.kafka_group,
                limits=Limits.from_settings(cfg.stream),
                manager=self.manager,
                metrics=self.metrics,
                catch_up_seconds=cfg.serve.catch_up_seconds,
            )
            handoff = self.speed.rebase
        self.watcher = RunWatcher(
            reader,
            handoff,
            self.metrics,
            max_fold_in_users=cfg.serve.fold_in_max_users,
            poll_seconds=cfg.serve.reload_poll_seconds,
            rank_ahead_n=cfg.serve.rank_ahead_n,
        )

    def start(self) -> None:
        self.watcher.start()
        if self.speed is not None:
            self.speed.start()

    def stop(self) -> None:
        self.watcher.stop()
        if self.speed is not None:
            self.speed.stop()

    def model(self) -> ServingModel:
        """The served model, or 503 before the first run is loaded."""
        model = self.manager.current
        if model is None:
            raise HTTPException(503, "no run loaded yet: none published, or none servable "
                                "(see the server's log); try again later")
        return model


# --- HTTP plumbing -------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=_JSON)


def _items(answer: Answer) -> list[dict[str, Any]]:
    return [{"product_id": p, "score": s}
            for p, s in zip(answer.product_ids, answer.scores, strict=True)]


class Guard:
    """Pure ASGI middleware: bounds the request (target length, no body) and records each
    request's count and latency under its route template."""

    def __init__(self, app: Any, metrics: ServeMetrics, max_url_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_url_bytes = max_url_bytes
        # The labelled children, looked up once per label set (labels() costs a lock and a
        # dictionary walk per call); the sets are bounded (route templates x methods x codes).
        self._routes: dict[int, tuple[str, Any]] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}

    def _route(self, scope: Scope) -> tuple[str, Any]:
        """(route template, its latency histogram)."""
        route = scope.get("route")
        known = self._routes.get(id(route))
        if known is None:
            label = UNMATCHED if route is None else _CONVERTOR.sub("}", route.path)
            known = self._routes[id(route)] = (label, self.metrics.latency.labels(label))
        return known

    def _counter(self, route: str, method: str, status: int) -> Any:
        key = (route, method if method in _METHODS else "other", status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(*key[:2], str(status))
        return counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            problem = self._problem(scope)
            if problem is None:
                await self.app(scope, receive, send_and_note)
            else:
                await _json({"detail": problem[1]}, problem[0])(scope, receive, send_and_note)
        finally:
            route, latency = self._route(scope)
            self._counter(route, scope["method"], status).inc()
            latency.observe(perf_counter() - started)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        size = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if size > self.max_url_bytes:
            return 414, f"the request target is {size} bytes; at most {self.max_url_bytes}"
        for name, value in scope["headers"]:
            if (name == b"content-length" and value.strip() not in (b"", b"0")) or (
                name == b"transfer-encoding"
            ):
                return 413, "this API takes no request body"
        return None


def _validation_problem(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
        f" (got {e.get('input')!r})"
        for e in errors
    )
    return JSONResponse({"detail": detail or str(exc)}, status_code=400)


# --- the app -------------------------------------------------------------------------------------


def create_app(cfg: AppConfig, reader: ResultsReader | None = None) -> FastAPI:
    """The API over the runs in cfg.paths.results (or `reader`), with its lifespan."""
    server = Server(cfg, reader or open_results(cfg.paths.results))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.start()
        log.info("watching %s for runs; fold-in %s", server.watcher.reader.location,
                 f"from {cfg.kafka.topic} at {cfg.kafka.bootstrap_servers}"
                 if server.speed else "off")
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(
        title="recsys-stream recommendations",
        version="1",
        summary="Recommendations of the latest published run, with purchases folded in "
        "between runs.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks: off (this server exports Prometheus metrics; the
        # hooks looked up their providers on every request).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.server = server
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_middleware(Guard, metrics=server.metrics, max_url_bytes=cfg.serve.max_url_bytes)
    app.include_router(_recommendation_routes(server, cfg))
    app.include_router(_operation_routes(server))
    return app


def _key_check(key: str) -> list[Any]:
    """The dependency that requires the API key on a route; none when no key is set."""
    if not key:
        return []
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def require_key(given: str | None = Depends(header)) -> None:
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    return [Depends(require_key)]


class CountParameter:
    """The `n` query parameter, which the hot routes read themselves: FastAPI's validation of
    a typed parameter is a large share of such a request's time (benchmarks/RESULTS.md, "API
    server"). Documented in OpenAPI by `openapi`."""

    def __init__(self, default: int, maximum: int) -> None:
        self.default, self.maximum = default, maximum

    def __call__(self, request: Request) -> int:
        raw = request.query_params.get("n")
        if raw is None:
            return self.default
        if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= self.maximum:
            return int(raw)
        raise HTTPException(400, f"n: a whole number from 1 to {self.maximum} (got {raw!r})")

    def openapi(self, path_name: str | None = None, path_doc: str = "") -> dict[str, Any]:
        """The route's parameters for `openapi_extra`: the path's one, if any, and `n`."""
        parameters: list[dict[str, Any]] = []
        if path_name is not None:
            parameters.append({"name": path_name, "in": "path", "required": True,
                               "description": path_doc, "schema": {"type": "string"}})
        parameters.append({
            "name": "n", "in": "query", "required": False,
            "description": f"how many products (1..{self.maximum})",
            "schema": {"type": "integer", "minimum": 1, "maximum": self.maximum,
                       "default": self.default},
        })
        return {"parameters": parameters}


def _recommendation_routes(server: Server, cfg: AppConfig) -> APIRouter:
    """/recommendations, /similar, /popular and /runs/latest, behind the API key if set."""
    router = APIRouter(dependencies=_key_check(cfg.serve.api_key))
    count = CountParameter(cfg.serve.default_n, cfg.serve.max_n)
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "a bad parameter (e.g. n out of range)"},
        503: {"model": Problem, "description": "no run loaded yet"},
    }
    if cfg.serve.api_key:
        errors[401] = {"model": Problem, "description": f"missing or wrong {API_KEY_HEADER}"}

    @router.get("/recommendations/{user_id:path}", response_model=Recommendations,
                responses=errors, tags=["recommendations"],
                openapi_extra=count.openapi("user_id", "the user's id, URL-encoded; any text"))
    async def recommendations(request: Request) -> Response:
        """The user's top n products, leaving out what they bought. `source`: `model` (the
        run's vector), `fold_in` (purchases after the run's cut folded in) or `popular` (the
        run does not know the user and no purchase of theirs arrived since)."""
        user_id: str = request.path_params["user_id"]
        n = count(request)
        model = server.model()
        if not user_id:
            raise HTTPException(400, "user_id must not be empty")
        answer = model.recommend(user_id, n)
        return _json({"user_id": user_id, "run_id": model.run_id, "source": answer.source,
                      "items": _items(answer)})

    @router.get("/similar/{product_id:path}", response_model=Similar,
                responses={**errors, 404: {"model": Problem, "description": "unknown product"}},
                tags=["recommendations"],
                openapi_extra=count.openapi("product_id", "the product's id, URL-encoded"))
    async def similar(request: Request) -> Response:
        """The n products nearest to this one by the cosine of the model's item factors."""
        product_id: str = request.path_params["product_id"]
        n = count(request)
        model = server.model()
        answer = model.similar(product_id, n)
        if answer is None:
            raise HTTPException(404, f"product {product_id!r} has no factors in run "
                                f"{model.run_id} (unknown, or bought only in held-out pairs)")
        return _json({"product_id": product_id, "run_id": model.run_id,
                      "items": _items(answer)})

    @router.get("/popular", response_model=Popular, responses=errors, tags=["recommendations"],
                openapi_extra=count.openapi())
    async def popular(request: Request) -> Response:
        """The run's most popular products (score: purchase events)."""
        n = count(request)
        model = server.model()
        answer = model.popular_answer(n)
        return _json({"run_id": model.run_id, "source": answer.source, "items": _items(answer)})

    @router.get("/runs/latest", response_model=LatestRun, responses=errors, tags=["runs"])
    async def latest_run() -> Response:
        """The served run: id, creation time, event counts, metrics, and its fold-in so far."""
        model = server.model()
        loaded = datetime.fromtimestamp(model.loaded_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _json({
            "run_id": model.run_id,
            "created_at": model.manifest.created_at,
            "loaded_at": loaded,
            "reason": model.manifest.reason,
            "events": model.manifest.events.to_dict(),
            "metrics": model.metrics.to_dict(),
            "parameters": model.manifest.parameters,
            "fold_in": {"users": len(model.fold_ins), "events": model.fold_in_events},
        })

    return router


def _operation_routes(server: Server) -> APIRouter:
    """/health, /ready and /metrics: never behind the API key (probes and scrapers)."""
    router = APIRouter(tags=["operations"])
    health_body = orjson.dumps({"status": "ok"})

    @router.get("/health", response_model=Health)
    async def health() -> Response:
        """Alive (a constant answer)."""
        return Response(health_body, media_type=_JSON)

    @router.get("/ready", response_model=Ready,
                responses={503: {"model": Ready, "description": "no run loaded yet"}})
    async def ready() -> Response:
        """Ready once a run is loaded."""
        model = server.manager.current
        if model is None:
            return _json({"ready": False, "run_id": None}, 503)
        return _json({"ready": True, "run_id": model.run_id})

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests and latency per route, the served run, reloads,
        fold-in events, quarantined records and lag."""
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
