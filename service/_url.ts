/**
 * URL helpers shared by the service's modules.
 *
 * @module
 */

/** Hides the password of a URL (`scheme://user:***@host`) for logs and error messages. */
export function redactUrl(url: string): string {
  return url.replace(/:\/\/([^:/@]+):[^@]+@/, "://$1:***@");
}
