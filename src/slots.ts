// Allocates connection slots (indices into the flow_stats array). A freed slot rests for a while
// before reuse: a datapath program that looked up the old flow just before its removal may still
// count one last packet into the slot, and that must not land on the next connection.

export class SlotAllocator {
  private readonly free: number[] = [];
  private readonly resting: { id: number; until: number }[] = [];
  private next = 0;

  constructor(
    private readonly size: number,
    private readonly restMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A free slot, or null when all are in use. */
  alloc(): number | null {
    const t = this.now();
    while (this.resting.length && this.resting[0]!.until <= t) this.free.push(this.resting.shift()!.id);
    if (this.free.length) return this.free.pop()!;
    if (this.next < this.size) return this.next++;
    return null;
  }

  /** Marks a slot in use that an earlier run handed out (adoption after a restart). */
  reserve(id: number): void {
    while (this.next <= id) this.free.push(this.next++);
    const i = this.free.indexOf(id);
    if (i >= 0) this.free.splice(i, 1);
  }

  release(id: number): void {
    this.resting.push({ id, until: this.now() + this.restMs });
  }

  get inUse(): number {
    return this.next - this.free.length - this.resting.length;
  }
}
