// Error messages for clinicians, from the gateway's problem `code` (or the HTTP status).
import { refusalMessage } from "./intended-use.js";

export const UNSUPPORTED_FILE =
  "This file type is not supported. Choose a chest X-ray saved as a JPEG, PNG or DICOM (.dcm) file.";

const TRY_AGAIN = "Please try again in a moment.";

const BY_CODE = {
  invalid_credentials: "The username or password is not correct.",
  unsupported_media_type: UNSUPPORTED_FILE,
  file_too_large: "This file is too large to upload. Choose a smaller image.",
  empty_file: "The file is empty. Choose a chest X-ray saved as a JPEG, PNG or DICOM file.",
  corrupt_image: "The image could not be read; the file may be damaged. Choose another image.",
  dicom_without_pixel_data: "This DICOM file holds no image. Choose another file.",
  dicom_not_renderable: "This DICOM image cannot be shown; its encoding is not supported.",
  invalid_refresh_token: "Your session has expired. Please sign in again.",
  refresh_token_reused: "Your session has expired. Please sign in again.",
  too_many_failed_logins: "Too many failed sign-ins. Please wait a few minutes and try again.",
  rate_limited: "Too many requests. Please wait a moment and try again.",
  username_taken: "This username is taken. Choose another one.",
  cannot_disable_self: "You cannot disable your own account.",
  cannot_reset_self: "Change your own password with Change password.",
  wrong_password: "The current password is not correct.",
  password_unchanged: "The new password must differ from the current one.",
  password_change_required: "Choose a new password before you go on.",
  export_too_large: "Too many rows for one export. Narrow the filters, for example the dates, and try again.",
  network_error: "The server could not be reached. Check the network connection and try again.",
  gateway_unavailable: "The server is not available at the moment.",
  inference_unavailable: "The classification service is not available at the moment.",
  storage_unavailable: "Image storage is not available at the moment.",
  database_unavailable: "The results database is not available at the moment.",
  image_kind_unavailable: "The image check that runs before classification is not available at the moment.",
  unknown_model: "This model is not available.",
  unsupported_transfer_syntax: "This DICOM file is compressed in a way that is not supported. Send it uncompressed.",
  forbidden: "Your account is not allowed to do this.",
  result_not_found: "This result no longer exists.",
  image_not_found: "The image of this result is missing.",
};

const BY_STATUS = {
  413: BY_CODE.file_too_large,
  415: BY_CODE.unsupported_media_type,
  502: BY_CODE.gateway_unavailable,
  503: "The service is not available at the moment.",
  504: BY_CODE.gateway_unavailable,
};

/**
 * The message to show for a failed request; empty when there is nothing to show
 * because the app has handled it already (an expired session goes back to sign-in).
 */
export function errorMessage(error) {
  if (error?.sessionExpired) return "";
  if (error?.status === undefined) return "Something went wrong in the app. Please reload the page.";
  const message = refusalMessage(error.problem) ?? BY_CODE[error.code] ?? BY_STATUS[error.status] ?? genericMessage(error);
  return error.status >= 500 ? `${message} ${retryHint(error.retryAfter)}` : message;
}

/** Whether sending the same request again may succeed (a network or server problem). */
export function isRetryable(error) {
  return error?.status === 0 || error?.status >= 500;
}

function retryHint(retryAfter) {
  const seconds = Number(retryAfter);
  return seconds > 0 ? `Please try again in ${seconds} seconds.` : TRY_AGAIN;
}

function genericMessage(error) {
  if (error.status >= 500) return "The server ran into a problem.";
  return `The request was not accepted (${error.status}): ${error.message}`;
}
