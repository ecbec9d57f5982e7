// Images that need the bearer token are fetched as blobs and shown through object URLs;
// each is fetched once per session and released on sign-out.
import { fetchImage, fetchResultPreview } from "./api.js";

const objectUrls = new Map(); // key -> Promise<object URL>

/** The object URL of a stored result's image as a browser shows it (DICOM rendered by the gateway). */
export function resultImageUrl(resultId) {
  return remembered(`result:${resultId}`, () => fetchResultPreview(resultId));
}

/** The URL to show an image the API serves at `path`; data: URLs are used as they are. */
export function apiImageUrl(path) {
  if (path.startsWith("data:")) return Promise.resolve(path);
  return remembered(`path:${path}`, () => fetchImage(path));
}

export function forgetImages() {
  for (const loading of objectUrls.values()) {
    loading.then((url) => URL.revokeObjectURL(url), () => {});
  }
  objectUrls.clear();
}

function remembered(key, loadBlob) {
  if (!objectUrls.has(key)) {
    const loading = loadBlob().then((blob) => URL.createObjectURL(blob));
    loading.catch(() => objectUrls.delete(key)); // let a later view retry
    objectUrls.set(key, loading);
  }
  return objectUrls.get(key);
}
