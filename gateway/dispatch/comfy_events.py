"""ComfyUI's websocket events applied to the jobs in flight (and to what is known of the backend:
the job running, the checkpoint loaded, the progress shown)."""

from __future__ import annotations

from gateway.comfy import protocol
from gateway.comfy.client import Connected, Disconnected
from gateway.dispatch.base import DispatcherBase
from gateway.dispatch.inflight import Tracked, about, log
from gateway.errors import ComfyUnavailable
from gateway.events import Progress
from gateway.jobs import Start


class EventHandling(DispatcherBase):
    async def _consume_events(self) -> None:
        async for event in self._client.events():
            try:
                await self._apply(event)
            except Exception:  # one bad event must not stop tracking
                prompt_id = getattr(event, "prompt_id", None)
                log.exception("handling ComfyUI event %r failed", event,
                              extra=about(prompt_id) if isinstance(prompt_id, str) else None)

    async def _apply(self, event: protocol.WsEvent | Connected | Disconnected) -> None:
        heard = self._tracked.get(getattr(event, "prompt_id", None) or "")
        if heard is not None:
            heard.last_heard = self._clock()
        match event:
            case Connected():
                log.info("connected to ComfyUI at %s", self._client.base_url)
                if self._abandoned:  # queued again elsewhere while this one was lost
                    for job_id in sorted(self._abandoned):
                        await self._withdraw(job_id)
                    self._abandoned.clear()
                self._connected = True
                self._disconnected_since = None
                self._running = None
                for tracked in self._tracked.values():
                    tracked.seen_start = False
                    tracked.images.clear()
                self._spawn(self._reconcile(list(self._tracked)))
                self._spawn(self._learn_version())
                self.wake()
            case Disconnected(reason=reason):
                if self._connected:
                    log.warning("lost ComfyUI at %s: %s", self._client.base_url, reason)
                    self._disconnected_since = self._clock()
                self._connected = False
                self._disconnect_reason = reason
            case protocol.ExecutionStart(prompt_id=pid) if pid in self._tracked:
                tracked = self._tracked[pid]
                tracked.seen_start = True
                tracked.images.clear()
                tracked.started_at = self._clock()
                self._running = pid
                await self._update(pid, Start(tracked.started_at))
            case protocol.Executing(prompt_id=pid, node=node) if (pid or self._running) in self._tracked:
                tracked = self._tracked[pid or self._running or ""]
                tracked.node = node
                if self._is_loader(tracked):
                    self._loaded(tracked.checkpoint)
                # steps stay at the last sampler's until another node reports some: a job's bar
                # does not fall back to zero while its image is decoded and saved
                last = self._hub.progress(tracked.job_id) or Progress()
                self._hub.set_progress(tracked.job_id, Progress(step=last.step, total_steps=last.total_steps,
                                                                node=node, node_type=self._node_type(tracked, node)))
            case protocol.Progress(prompt_id=pid, node=node, value=value, max=total) if (
                    (pid or self._running) in self._tracked):
                tracked = self._tracked[pid or self._running or ""]
                node = node or tracked.node
                self._hub.set_progress(tracked.job_id, Progress(step=value, total_steps=total, node=node,
                                                                node_type=self._node_type(tracked, node)))
            case protocol.Preview(image=image, mime=mime, prompt_id=pid) if (pid or self._running) in self._tracked:
                self._hub.preview(pid or self._running or "", image, mime)
            case protocol.Executed(prompt_id=pid, images=images) if pid in self._tracked:
                self._tracked[pid].images.extend(images)
            case protocol.ExecutionError(prompt_id=pid, message=message) if pid in self._tracked:
                self._last_error = message
                await self._fail(pid, message)
            case protocol.ExecutionInterrupted(prompt_id=pid) if pid in self._tracked:
                await self._fail(pid, "interrupted in ComfyUI")
            case protocol.Finished(prompt_id=pid) if pid in self._tracked:
                tracked = self._tracked[pid]
                tracked.ended_at = self._clock()
                if self._running == pid:
                    self._running = None
                if tracked.seen_start:
                    self._loaded(tracked.checkpoint)  # its loader ran or was cached: the model is loaded
                if not tracked.settling:
                    self._settle(tracked, list(tracked.images) if tracked.seen_start else None)

    async def _learn_version(self) -> None:
        try:
            stats = await self._client.system_stats()
        except ComfyUnavailable:
            return
        system = stats.get("system")
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        self._version = version if isinstance(version, str) else None

    def _is_loader(self, tracked: Tracked) -> bool:
        preset = self._presets().get(tracked.preset)
        return preset is not None and any(ref.node_id == tracked.node for ref in preset.bindings.get("checkpoint", ()))

    def _node_type(self, tracked: Tracked, node: str | None) -> str | None:
        preset = self._presets().get(tracked.preset)
        spec = preset.graph.get(node) if preset is not None and node is not None else None
        class_type = spec.get("class_type") if spec is not None else None
        return class_type if isinstance(class_type, str) else None

    def _loaded(self, checkpoint: str | None) -> None:
        if checkpoint is None or checkpoint == self._loaded_checkpoint:
            return
        if self._loaded_checkpoint is not None:
            self._model_swaps += 1
        self._loaded_checkpoint = checkpoint
