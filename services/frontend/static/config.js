// Deployment settings, loaded before the app; operators may edit this file (no build step).
window.CXR_CONFIG = { apiBaseUrl: "/api" };
