/** A position in a Dockerfile: 1-based line and column (column counts UTF-16 code units). */
export interface Position {
  line: number;
  column: number;
}

export interface Span {
  start: Position;
  end: Position;
}

/**
 * Maps offsets in a text assembled from several physical lines (a logical line:
 * continuation lines joined, comments dropped) back to source positions.
 */
export class OffsetMap {
  /** Parallel arrays: the text offset where each piece starts, and that piece's source position. */
  private readonly offsets: number[] = [];
  private readonly positions: Position[] = [];

  add(offset: number, position: Position): void {
    this.offsets.push(offset);
    this.positions.push(position);
  }

  /** The source position of the character at `offset` in the assembled text. */
  positionOf(offset: number): Position {
    let low = 0;
    let high = this.offsets.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.offsets[mid] as number) <= offset) low = mid;
      else high = mid - 1;
    }
    const base = this.positions[low] ?? { line: 1, column: 1 };
    const pieceStart = this.offsets[low] ?? 0;
    return { line: base.line, column: base.column + (offset - pieceStart) };
  }

  spanOf(startOffset: number, endOffset: number): Span {
    return { start: this.positionOf(startOffset), end: this.positionOf(endOffset) };
  }

  /** A map for text that is a slice of this one, starting at `offset`. */
  slice(offset: number): OffsetMap {
    const sliced = new OffsetMap();
    sliced.add(0, this.positionOf(offset));
    for (let i = 0; i < this.offsets.length; i++) {
      const pieceOffset = this.offsets[i] as number;
      if (pieceOffset > offset) sliced.add(pieceOffset - offset, this.positions[i] as Position);
    }
    return sliced;
  }
}
