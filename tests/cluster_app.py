"""The app the cluster tests serve, in-process and as ``mcp-trio serve tests.cluster_app:make_app``.

Each tool says which process (its cluster node) served it, so a test sees a session's
requests hop between processes.
"""

from __future__ import annotations

import os

import trio

from mcp_trio import Context, Server, task_support


def _node(ctx: Context) -> str:
    cluster = ctx.peer.supervisor.cluster
    return f"{os.getpid()}/{cluster.node_id if cluster is not None else '-'}"


def make_app() -> Server:
    app = Server("cluster-test", version="1.0")

    @app.tool
    async def where(ctx: Context) -> str:
        """The process (pid/node) serving this call."""
        return _node(ctx)

    @app.tool
    async def echo(text: str) -> str:
        return text

    @app.tool
    async def limited(ctx: Context) -> str:
        """A tool the multi-host test gives a rate of its own (``[rate_limit.tools.limited]``)."""
        return _node(ctx)

    @app.tool(tags=["beta"])
    async def beta() -> str:
        return "beta"

    @app.tool
    async def ask(prompt: str, ctx: Context) -> str:
        """Sampling while this POST is served: the client's answer may reach another process."""
        result = await ctx.sample(prompt, max_tokens=10)
        content = result.content
        text = content.get("text") if isinstance(content, dict) else getattr(content, "text", "")
        return f"{_node(ctx)} heard {text}"

    @app.tool
    async def say(ctx: Context) -> str:
        """One log message at each of debug, info and warning."""
        for level in ("debug", "info", "warning"):
            await ctx.log(level, f"at {level}")
        return _node(ctx)

    @app.tool
    async def touch(uri: str, ctx: Context) -> str:
        """Tell subscribers that ``uri`` changed (on whichever process holds their stream)."""
        ctx.notify_resource_updated(uri)
        return _node(ctx)

    @app.tool
    async def nap(seconds: float, ctx: Context) -> str:
        """A log line, then a nap: a POST whose SSE stream lasts a while."""
        await ctx.info("napping")
        await trio.sleep(seconds)
        await ctx.info("awake")
        return _node(ctx)

    @app.tool
    async def poll_me(ctx: Context) -> str:
        """Closes its SSE stream (the client resumes with GET + Last-Event-ID), then answers."""
        await ctx.info("before the pause")
        ctx.close_stream(retry=0.05)
        await trio.sleep(0.3)
        await ctx.info("after the pause")
        return f"answered by {_node(ctx)}"

    @app.tool
    @task_support("optional")
    async def brew(seconds: float, ctx: Context) -> str:
        """A task: the caller gets its id at once; the result after ``seconds``."""
        await ctx.run_as_task()
        await trio.sleep(seconds)
        return f"brewed by {_node(ctx)}"

    @app.resource("note://a")
    async def note() -> str:
        return "a note"

    return app
