"""comfy-gateway: a durable REST API in front of ComfyUI.

Modules, one job each (imports only go down this list):
    errors, models          error tree with HTTP statuses; pydantic request/record models
    settings                all configuration, from the environment
    bindings, presets       where parameters go in a graph; loading presets.yaml + workflows
    compiler, jobs          request -> prompts; the job state machine (pure)
    parameters              a preset's parameters described for clients (pure)
    comfy.protocol, keys    ComfyUI frames and answers parsed (pure); API key hashing (pure)
    backoff                 when to start a dead process again (pure)
    comfy.client, store,    ComfyUI over HTTP + websocket; SQLite; result files;
      outputs, supervisor   ComfyUI as a child process (managed mode)
    dispatcher, check       feeds ComfyUI from the queue and settles jobs; `check` command
    api                     aiohttp handlers and middlewares; api.openapi describes them
    web/                    the web page and the docs page (static files)
    app                     create_app(): the one wiring place
    __main__                the command line

Beside them, the client (imports only errors and models of the above; used only by __main__):
    sdk.sse, sdk.calls,     server-sent events decoder; every request and how its answer is read;
      sdk.events              typed job events and reconnects (pure)
    sdk.client              GatewayClient / AsyncGatewayClient over httpx
    sdk.view, sdk.cli       progress bars or plain lines; `comfy-gateway generate`
"""
