// The sign-in form.
import * as api from "../api.js";
import { showMessage } from "../dom.js";
import { errorMessage } from "../messages.js";

export function createLoginView(section, { onSignedIn }) {
  const form = section.querySelector("form");
  const username = form.elements.username;
  const password = form.elements.password;
  const submit = form.querySelector("button[type=submit]");
  const notice = section.querySelector("[data-role=notice]");
  const error = section.querySelector("[data-role=error]");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(notice, "");
    showMessage(error, "");
    submit.disabled = true;
    try {
      await api.signIn(username.value.trim(), password.value);
      await onSignedIn();
      form.reset();
    } catch (failure) {
      api.signOut();
      showMessage(error, errorMessage(failure));
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });

  return {
    /** Shows the form, with an optional notice such as "your session has expired". */
    show(noticeText = "") {
      section.hidden = false;
      showMessage(notice, noticeText);
      showMessage(error, "");
      (username.value ? password : username).focus();
    },
    hide() {
      section.hidden = true;
    },
  };
}
