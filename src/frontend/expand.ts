import { ShellExpansionError, expandWord, expandWords, type EscapeChar } from "../parser/index.ts";

/** Expands a word with the given variables (unset ones expand to ""), reporting syntax errors through `fail`. */
export function expandIn(word: string, variables: ReadonlyMap<string, string>, escape: EscapeChar, fail: (message: string) => never): string {
  try {
    return expandWord(word, variables, { escape });
  } catch (error) {
    if (error instanceof ShellExpansionError) fail(error.reason);
    throw error;
  }
}

/** Expands to several words (EXPOSE): unquoted whitespace from variables separates them. */
export function expandWordsIn(word: string, variables: ReadonlyMap<string, string>, escape: EscapeChar, fail: (message: string) => never): string[] {
  try {
    return expandWords(word, variables, { escape });
  } catch (error) {
    if (error instanceof ShellExpansionError) fail(error.reason);
    throw error;
  }
}
