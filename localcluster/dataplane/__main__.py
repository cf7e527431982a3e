"""python -m localcluster.dataplane --port P: run the local data plane until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web
from kubernetes import client, config

from .controller import Controller
from .ingress import Ingress
from .supervisor import Supervisor
from .webhook import add_arguments as add_webhook_arguments
from .webhook import start_from_args as start_webhook

REPO = Path(__file__).resolve().parents[2]


async def serve(args: argparse.Namespace) -> None:
    config.load_kube_config(args.kubeconfig)  # type: ignore[no-untyped-call]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hook = start_webhook(args)  # Seldon's validating webhook (HTTPS), when --webhook-port is given
    async with Supervisor(Path(args.venv), Path(args.state_dir) / "logs" / "models") as supervisor:
        ingress = Ingress(supervisor)
        runner = web.AppRunner(ingress.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        controller = Controller(client.CustomObjectsApi(), supervisor, ingress, Path(args.models_dir),
                                Path(args.state_dir) / "prometheus" / "targets" / "model-servers.json",
                                f"http://127.0.0.1:{args.port}", reconcile_delay_s=args.reconcile_delay)
        logging.info("data plane ingress on http://127.0.0.1:%d", args.port)
        try:
            await controller.run(stop)
        finally:
            await runner.cleanup()
            if hook is not None:
                hook.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kubeconfig", default=str(REPO / ".localcluster" / "kubeconfig"))
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--venv", default=str(REPO / ".venv-model-server"))
    parser.add_argument("--state-dir", default=str(REPO / ".localcluster"))
    parser.add_argument("--reconcile-delay", type=float, default=1.0, help="seconds before a spec write takes effect")
    add_webhook_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
