// Result images need the bearer token, so they are fetched as blobs and shown through
// object URLs; each is fetched once per session and released on sign-out.
import { fetchImage } from "./api.js";

const objectUrls = new Map(); // result id -> Promise<object URL>

/** Loads the result's image into `img`; rejects with the ApiError when it cannot. */
export async function loadImageInto(img, result) {
  if (!objectUrls.has(result.id)) {
    const loading = fetchImage(result.image.url).then((blob) => URL.createObjectURL(blob));
    loading.catch(() => objectUrls.delete(result.id)); // let a later view retry
    objectUrls.set(result.id, loading);
  }
  img.src = await objectUrls.get(result.id);
}

export function forgetImages() {
  for (const loading of objectUrls.values()) {
    loading.then((url) => URL.revokeObjectURL(url), () => {});
  }
  objectUrls.clear();
}
