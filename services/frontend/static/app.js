// Entry point: wires the views together and switches between sign-in and the workspace.
import * as api from "./api.js";
import { forgetImages } from "./images.js";
import { createClassifyView } from "./views/classify.js";
import { createDetailView } from "./views/detail.js";
import { createHistoryView } from "./views/history.js";
import { createLoginView } from "./views/login.js";

const ROLE_NAMES = { admin: "Administrator", clinician: "Clinician" };

const workspace = document.getElementById("workspace");
const sessionBar = document.getElementById("session");
const sessionUser = document.getElementById("session-user");

const login = createLoginView(document.getElementById("login"), { onSignedIn: enterWorkspace });
const detail = createDetailView(document.getElementById("detail"));
const history = createHistoryView(document.getElementById("history"), { onOpen: detail.open });
const classify = createClassifyView(document.getElementById("classify"), {
  onClassified: (result) => history.showLatest(result.id),
});

async function enterWorkspace() {
  const user = await api.getCurrentUser();
  sessionUser.textContent = `${user.username} · ${ROLE_NAMES[user.role] ?? user.role}`;
  login.hide();
  sessionBar.hidden = false;
  workspace.hidden = false;
  document.getElementById("classify-heading").focus();
  history.load();
}

function leaveWorkspace(notice) {
  api.signOut();
  detail.close();
  classify.reset();
  history.reset();
  forgetImages();
  workspace.hidden = true;
  sessionBar.hidden = true;
  sessionUser.textContent = "";
  login.show(notice);
}

api.onSessionExpired(() => leaveWorkspace("Your session has expired. Please sign in again."));
document.getElementById("sign-out").addEventListener("click", () => leaveWorkspace("You have signed out."));

// A file dropped next to the drop zone would otherwise make the browser open it and leave the app.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => event.preventDefault());
}

login.show();
