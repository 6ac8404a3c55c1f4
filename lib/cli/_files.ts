/**
 * File checks the commands that write files share (`cert`, `template pair`): they never overwrite.
 *
 * @module
 */

/** Whether anything (file, folder, link, even a dangling one) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
