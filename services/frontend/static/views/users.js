// Admin: user accounts — list, create, disable.
import * as api from "../api.js";
import { el, showMessage } from "../dom.js";
import { errorMessage } from "../messages.js";
import { createTableLoader, dateCell, disableCell, statusCell } from "./table.js";

export const ROLE_NAMES = { admin: "Administrator", clinician: "Clinician", service: "API client" };

export function createUsersView(section, { currentUser }) {
  const form = section.querySelector("[data-role=create]");
  const formError = form.querySelector("[data-role=form-error]");
  const formStatus = form.querySelector("[data-role=form-status]");
  const table = createTableLoader(section, async () => (await api.listUsers()).map(renderRow));

  function renderRow(user) {
    const isSelf = user.id === currentUser()?.id;
    return el(
      "tr",
      {},
      el("td", { textContent: isSelf ? `${user.username} (you)` : user.username }),
      el("td", { textContent: ROLE_NAMES[user.role] ?? user.role }),
      statusCell(user.is_active),
      dateCell(user.created_at),
      isSelf ? el("td") : disableCell(user, user.username, () => disable(user)),
    );
  }

  async function disable(user) {
    try {
      await api.disableUser(user.id);
      await table.load();
    } catch (failure) {
      table.showError(failure);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(formError, "");
    showMessage(formStatus, "");
    const { username, password, role } = Object.fromEntries(new FormData(form));
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const user = await api.createUser({ username: username.trim(), password, role });
      form.reset();
      showMessage(formStatus, `The user ${user.username} was created and can sign in now.`);
      await table.load();
    } catch (failure) {
      showMessage(formError, errorMessage(failure));
    } finally {
      submit.disabled = false;
    }
  });

  return {
    load: table.load,
    reset() {
      form.reset();
      showMessage(formError, "");
      showMessage(formStatus, "");
      table.clear();
    },
  };
}
