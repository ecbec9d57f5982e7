// Starts Swagger UI on the gateway's schema. Everything is relative to this page, so the docs work at the
// gateway's root (/docs/) and behind the frontend's proxy (/api/docs/) alike, with no inline script (CSP).
const base = new URL("../", window.location.href);

function rebased(request) {
  // the schema's paths are the gateway's own (/classify); behind a proxy they live under its prefix
  const url = new URL(request.url, base);
  if (url.origin === base.origin && !url.pathname.startsWith(base.pathname)) {
    url.pathname = base.pathname + url.pathname.replace(/^\//, "");
  }
  request.url = url.href;
  return request;
}

window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", base).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  requestInterceptor: rebased,
});
