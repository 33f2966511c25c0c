// The trivial callback of the fleet benchmark (redis_fleet.ts): the chunk's
// length, so that almost nothing travels back and the figure is the path's.
export default (chunk: Uint8Array): number => chunk.length;
