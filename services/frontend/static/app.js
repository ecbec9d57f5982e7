// Entry point: sign-in, the pages of the workspace (hash routes), and what happens when the session ends.
import * as api from "./api.js";
import { showMessage } from "./dom.js";
import { stopWatchingIdle, watchIdle } from "./idle.js";
import { forgetImages } from "./images.js";
import { createAuditView } from "./views/audit.js";
import { createClassifyView } from "./views/classify.js";
import { createClientsView } from "./views/clients.js";
import { createDetailView } from "./views/detail.js";
import { createHistoryView } from "./views/history.js";
import { createLoginView } from "./views/login.js";
import { createModelsView } from "./views/models.js";
import { createPasswordView } from "./views/password.js";
import { createUsersView, ROLE_NAMES } from "./views/users.js";

const nav = document.getElementById("nav");
const sessionBar = document.getElementById("session");
const sessionUser = document.getElementById("session-user");
const appError = document.getElementById("app-error");

let currentUser = null;

const login = createLoginView(document.getElementById("login"), { onSignedIn: enterWorkspace });
const detail = createDetailView(document.getElementById("detail"));
const views = {
  classify: createClassifyView(document.getElementById("classify")),
  history: createHistoryView(document.getElementById("history"), { onOpen: detail.open }),
  models: createModelsView(document.getElementById("models")),
  users: createUsersView(document.getElementById("users"), { currentUser: () => currentUser }),
  clients: createClientsView(document.getElementById("clients")),
  audit: createAuditView(document.getElementById("audit")),
  account: createPasswordView(document.getElementById("account"), { onChanged: passwordChanged }),
};
const ROUTES = {
  "#/classify": "classify",
  "#/history": "history",
  "#/models": "models",
  "#/admin/users": "users",
  "#/admin/clients": "clients",
  "#/admin/audit": "audit",
  "#/account/password": "account",
};
const ADMIN_PAGES = new Set(["users", "clients", "audit"]);

async function enterWorkspace() {
  currentUser = await api.getCurrentUser();
  sessionUser.textContent = `${currentUser.username} · ${ROLE_NAMES[currentUser.role] ?? currentUser.role}`;
  for (const part of document.querySelectorAll("[data-admin]")) part.hidden = currentUser.role !== "admin";
  views.account.require(currentUser.must_change_password);
  login.hide();
  nav.hidden = currentUser.must_change_password; // nothing else answers until a new password is chosen
  sessionBar.hidden = false;
  watchIdle(api.idleTimeoutSeconds(), () => leaveWorkspace(IDLE_NOTICE));
  showPage();
}

/** After a required change the workspace opens; after a chosen one the page stays, with its notice. */
async function passwordChanged(wasRequired) {
  if (wasRequired) {
    history.replaceState(null, "", "#/classify");
    await enterWorkspace();
  }
}

/** Shows the page the address names (Classify when it names none, or one this user may not see). */
function showPage() {
  if (!currentUser) return;
  const modelPage = location.hash.match(/^#\/models\/([^/]+)$/); // one model's page: #/models/<name>
  let page = modelPage ? "models" : (ROUTES[location.hash] ?? "classify");
  if (ADMIN_PAGES.has(page) && currentUser.role !== "admin") page = "classify";
  if (currentUser.must_change_password) page = "account";
  detail.close();
  for (const [name, view] of Object.entries(views)) {
    document.getElementById(name).hidden = name !== page;
    if (name === page) view.load?.(...(modelPage ? [decodeURIComponent(modelPage[1])] : []));
  }
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.getElementById(page).querySelector("h1").focus();
}

const IDLE_NOTICE = "You were signed out after a time without activity. Please sign in again.";

function leaveWorkspace(notice) {
  stopWatchingIdle();
  currentUser = null;
  api.signOut();
  detail.close();
  for (const view of Object.values(views)) view.reset();
  forgetImages();
  for (const name of Object.keys(views)) document.getElementById(name).hidden = true;
  nav.hidden = true;
  sessionBar.hidden = true;
  sessionUser.textContent = "";
  showMessage(appError, "");
  login.show(notice);
}

api.onSessionExpired(() => leaveWorkspace("Your session has expired. Please sign in again."));
document.getElementById("sign-out").addEventListener("click", () => leaveWorkspace("You have signed out."));
window.addEventListener("hashchange", showPage);

// A bug must not leave a blank or frozen screen without a word.
const APP_FAILED = "Something went wrong in the app. Please reload the page; your results are saved.";
window.addEventListener("error", () => showMessage(appError, APP_FAILED));
window.addEventListener("unhandledrejection", () => showMessage(appError, APP_FAILED));

// A file dropped next to the drop zone would otherwise make the browser open it and leave the app.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => event.preventDefault());
}

login.show();
