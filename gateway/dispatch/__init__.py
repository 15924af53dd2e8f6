"""The dispatcher's parts, one concept each; `gateway.dispatcher.Dispatcher` puts them together.

- `inflight`: what is known of a job in ComfyUI beyond the store, and the pure rules on it
- `base`: the shared state, the store writes, settling a finished prompt (`results` stores its files)
- `feeding`: choosing, claiming and posting the next job
- `comfy_events`: applying ComfyUI's websocket events
- `deadlines`: deadlines, silent jobs and a ComfyUI lost for good
- `lease`: the lease on in-flight jobs shared with other gateways
- `control`: cancelling
"""
