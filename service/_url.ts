/**
 * URL helpers shared by the service's modules.
 *
 * @module
 */

/**
 * Hides the password of a URL (`scheme://user:***@host`), or of each URL of a comma-separated
 * list, for logs and error messages.
 */
export function redactUrl(url: string): string {
  return url.replace(/:\/\/([^:/@,]+):[^@,]+@/g, "://$1:***@");
}
