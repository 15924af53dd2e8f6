"""comfy-gateway: a durable REST API in front of ComfyUI.

Modules, one job each (imports only go down this list):
    errors, models          error tree with HTTP statuses; pydantic request/record models
    settings                all configuration, from the environment
    bindings, presets       where parameters go in a graph; loading presets.yaml + workflows
    compiler, jobs          request -> prompts; the job state machine (pure)
    comfy.protocol, keys    ComfyUI frames and answers parsed (pure); API key hashing (pure)
    webhooks, refimages     webhook events, signing, SSRF checks; reference images decoded (pure)
    comfy.client, store,    ComfyUI over HTTP + websocket; SQLite (jobs, keys, webhook outbox,
      outputs                 saved results); result, saved and reference image files
    dispatcher, check       feeds ComfyUI from the queue and settles jobs; `check` command
    delivery, retention     sends webhook deliveries from the outbox; removes old results
    api                     aiohttp handlers and middlewares
    app                     create_app(): the one wiring place
    __main__                the command line
"""
