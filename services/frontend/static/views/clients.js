// Admin: API clients (hospital systems) — list, create (the secret is shown once), disable.
import * as api from "../api.js";
import { el, showMessage } from "../dom.js";
import { errorMessage } from "../messages.js";
import { createTableLoader, dateCell, disableCell, statusCell } from "./table.js";

export function createClientsView(section) {
  const form = section.querySelector("[data-role=create]");
  const formError = form.querySelector("[data-role=form-error]");
  const secretBox = section.querySelector("[data-role=secret]");
  const secretValue = secretBox.querySelector("[data-role=secret-value]");
  const copyButton = secretBox.querySelector("[data-role=copy]");
  const table = createTableLoader(section, async () => (await api.listClients()).map(renderRow));

  function renderRow(client) {
    return el(
      "tr",
      {},
      el("td", { textContent: client.name }),
      el("td", {}, el("code", { textContent: client.client_id })),
      statusCell(client.is_active),
      dateCell(client.created_at),
      disableCell(client, client.name, () => disable(client)),
    );
  }

  async function disable(client) {
    try {
      await api.disableClient(client.id);
      await table.load();
    } catch (failure) {
      table.showError(failure);
    }
  }

  function showSecret(client) {
    secretBox.querySelector("[data-role=secret-name]").textContent = client.name;
    secretBox.querySelector("[data-role=secret-client-id]").textContent = client.client_id;
    secretValue.textContent = client.client_secret;
    copyButton.textContent = "Copy secret";
    secretBox.hidden = false;
    secretBox.focus();
  }

  function hideSecret() {
    secretValue.textContent = ""; // not kept in the page once dismissed
    secretBox.hidden = true;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(formError, "");
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const client = await api.createClient(form.elements.name.value.trim());
      form.reset();
      showSecret(client);
      await table.load();
    } catch (failure) {
      showMessage(formError, errorMessage(failure));
    } finally {
      submit.disabled = false;
    }
  });
  copyButton.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secretValue.textContent);
      copyButton.textContent = "Copied";
    } catch {
      copyButton.textContent = "Copy failed: select the secret and copy it";
    }
  });
  secretBox.querySelector("[data-role=dismiss]").addEventListener("click", () => {
    hideSecret();
    form.elements.name.focus();
  });

  return {
    load: table.load,
    reset() {
      form.reset();
      showMessage(formError, "");
      hideSecret();
      table.clear();
    },
  };
}
