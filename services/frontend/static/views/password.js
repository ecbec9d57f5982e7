// Change one's own password: any signed-in user, and required after an administrator's reset
// (then the workspace shows nothing else until it is done).
import * as api from "../api.js";
import { roles, showMessage } from "../dom.js";
import { errorMessage } from "../messages.js";

export function createPasswordView(section, { onChanged }) {
  const { form, forced, error, status } = roles(section, "form", "forced", "error", "status");
  const submit = form.querySelector("button[type=submit]");
  let required = false;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(error, "");
    showMessage(status, "");
    const { current, next, repeat } = Object.fromEntries(new FormData(form));
    if (next !== repeat) {
      showMessage(error, "The two new passwords are not the same.");
      form.elements.repeat.focus();
      return;
    }
    submit.disabled = true;
    try {
      await api.changePassword(current, next);
      form.reset();
      showMessage(status, "Your password was changed. You stay signed in here; other sessions have ended.");
      const wasRequired = required;
      required = false;
      forced.hidden = true;
      await onChanged(wasRequired);
    } catch (failure) {
      showMessage(error, errorMessage(failure));
      form.elements.current.focus();
    } finally {
      submit.disabled = false;
    }
  });

  return {
    /** Shows the form; `mustChange` when the gateway requires a new password before anything else. */
    require(mustChange) {
      required = mustChange;
      forced.hidden = !mustChange;
    },
    load() {
      showMessage(error, "");
      showMessage(status, "");
    },
    reset() {
      form.reset();
      required = false;
      forced.hidden = true;
      showMessage(error, "");
      showMessage(status, "");
    },
  };
}
