// Swagger UI on the gateway's own OpenAPI document. "Authorize" takes the API key; the key the
// web page saved (same browser) is filled in already.
window.addEventListener("load", () => {
  const key = localStorage.getItem("comfy-gateway.api-key");
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    tryItOutEnabled: true,
    onComplete: () => {
      if (key) window.ui.preauthorizeApiKey("apiKeyHeader", key);
    },
  });
});
