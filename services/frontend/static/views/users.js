// Admin: user accounts — list, create, reset a password (the temporary one is shown once), disable, enable.
import * as api from "../api.js";
import { el, roles, showMessage } from "../dom.js";
import { errorMessage } from "../messages.js";
import { createTableLoader, dateCell, rowAction, statusCell } from "./table.js";

export const ROLE_NAMES = { admin: "Administrator", clinician: "Clinician", service: "API client" };

export function createUsersView(section, { currentUser }) {
  const form = section.querySelector("[data-role=create]");
  const formError = form.querySelector("[data-role=form-error]");
  const formStatus = form.querySelector("[data-role=form-status]");
  const secret = roles(section.querySelector("[data-role=secret]"), "secret-name", "secret-value", "copy", "dismiss");
  const secretBox = section.querySelector("[data-role=secret]");
  const table = createTableLoader(section, async () => (await api.listUsers()).map(renderRow));

  function renderRow(user) {
    const isSelf = user.id === currentUser()?.id;
    const status = statusCell(user.is_active);
    if (user.must_change_password) {
      status.append(el("span", { className: "cell-note", textContent: "New password due at next sign-in" }));
    }
    return el(
      "tr",
      {},
      el("td", { textContent: isSelf ? `${user.username} (you)` : user.username }),
      el("td", { textContent: ROLE_NAMES[user.role] ?? user.role }),
      status,
      dateCell(user.created_at),
      el("td", { className: "row-actions" }, ...(isSelf ? [] : actions(user))),
    );
  }

  function actions(user) {
    const name = user.username;
    if (!user.is_active) return [rowAction("Enable", name, () => act(() => api.enableUser(user.id)))];
    return [
      rowAction("Reset password", name, () => reset(user), {
        confirm: `Reset the password of ${name}? Their sessions end, and they choose a new password at their next sign-in.`,
      }),
      rowAction("Disable", name, () => act(() => api.disableUser(user.id)), {
        danger: true,
        confirm: `Disable ${name}? Their sign-ins and sessions stop working at once; an administrator can enable the account again.`,
      }),
    ];
  }

  async function act(change) {
    try {
      await change();
      await table.load();
    } catch (failure) {
      table.showError(failure);
    }
  }

  async function reset(user) {
    try {
      const answer = await api.resetUserPassword(user.id);
      showTemporaryPassword(user.username, answer.temporary_password);
      await table.load();
    } catch (failure) {
      table.showError(failure);
    }
  }

  function showTemporaryPassword(username, password) {
    secret.secretName.textContent = username;
    secret.secretValue.textContent = password;
    secret.copy.textContent = "Copy password";
    secretBox.hidden = false;
    secretBox.focus();
  }

  function hideTemporaryPassword() {
    secret.secretValue.textContent = ""; // not kept in the page once dismissed
    secretBox.hidden = true;
  }

  secret.copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret.secretValue.textContent);
      secret.copy.textContent = "Copied";
    } catch {
      secret.copy.textContent = "Copy failed: select the password and copy it";
    }
  });
  secret.dismiss.addEventListener("click", hideTemporaryPassword);

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
      hideTemporaryPassword();
      table.clear();
    },
  };
}
