"""comfy-gateway: a durable REST API in front of ComfyUI.

Modules, one job each (imports only go down this list):
    errors, models          error tree with HTTP statuses; pydantic request/record models
    settings                all configuration, from the environment
    bindings, presets       where parameters go in a graph; loading presets.yaml + workflows
    editor, loras, choices  editor-format workflows converted; LoRA insertion; allowed names (pure)
      editor_graph,           (the editor's graph read into nodes, links and slots; a node
      editor_widgets          definition's widgets and their saved values)
    compiler, jobs          request -> prompts; the job state machine (pure)
    parameters              a preset's parameters described for clients (pure)
    comfy.protocol, keys    ComfyUI frames and answers parsed (pure); API key hashing (pure)
    backoff                 when to start a dead process again (pure)
    webhooks, refimages     webhook events, signing, SSRF checks; reference images decoded (pure)
    comfy.client, store,    ComfyUI over HTTP + websocket; SQLite (a package: schema, group
      outputs, events,        commit, jobs, queue, idempotency, outbox, gallery, keys); result,
                              thumbnail, saved and reference files;
      supervisor,             live events for watchers; ComfyUI as a child process (managed mode);
      preset_files            presets.yaml and workflows written atomically
    dispatch.*              the dispatcher's parts: in-flight jobs and their rules (pure),
                              results, settling, feeding, ComfyUI events, deadlines, lease, cancel
    dispatcher, check       feeds ComfyUI from the queue and settles jobs; `check` command
    preset_registry         the live preset set: loads, reloads on change, applies API edits
    delivery, retention     sends webhook deliveries from the outbox; removes old results
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
