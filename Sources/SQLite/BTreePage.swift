import Foundation
import Support

/// What one b-tree page holds, read from its bytes as SQLite's file format lays them out
/// (https://sqlite.org/fileformat2.html#b_tree_pages): enough to walk a table's b-tree and to
/// know which rowids a leaf holds, without SQLite.
///
/// Used where a restore's preview must find the rows that differ between two databases without
/// reading every row: a table leaf whose bytes are equal in both holds equal rows.
package enum BTreePage: Sendable, Equatable {
    /// An interior page of a table b-tree: its child pages, in key order.
    case tableInterior(children: [Int])
    /// A leaf page of a table b-tree: the rowids of its first and last cell (nil when empty).
    case tableLeaf(rowids: ClosedRange<Int64>?)
    /// A page of an index b-tree (or of a WITHOUT ROWID table).
    case index
    /// Anything else: an overflow, freelist or pointer-map page, or bytes that do not parse.
    case other

    /// Parses `page`, the bytes of page `number` (page 1 starts with the 100-byte file header).
    package init(_ page: UnsafeRawBufferPointer, number: Int) {
        let h = number == 1 ? 100 : 0
        guard page.count >= h + 12 else { self = .other; return }
        func u16(_ at: Int) -> Int { Int(page[at]) << 8 | Int(page[at + 1]) }
        func u32(_ at: Int) -> Int { Int(page[at]) << 24 | Int(page[at + 1]) << 16 | Int(page[at + 2]) << 8 | Int(page[at + 3]) }
        let cells = u16(h + 3)
        switch page[h] {
        case 0x05:
            guard h + 12 + cells * 2 <= page.count else { self = .other; return }
            var children = [Int]()
            children.reserveCapacity(cells + 1)
            for i in 0..<cells {
                let cell = u16(h + 12 + 2 * i)
                guard cell + 4 <= page.count else { self = .other; return }
                children.append(u32(cell))
            }
            children.append(u32(h + 8))
            self = .tableInterior(children: children)
        case 0x0D:
            guard cells > 0 else { self = .tableLeaf(rowids: nil); return }
            guard h + 8 + cells * 2 <= page.count else { self = .other; return }
            func rowid(ofCell i: Int) -> Int64? {
                var at = u16(h + 8 + 2 * i)
                guard Self.varint(page, &at) != nil else { return nil }  // payload size
                return Self.varint(page, &at)
            }
            guard let first = rowid(ofCell: 0), let last = rowid(ofCell: cells - 1), first <= last else { self = .other; return }
            self = .tableLeaf(rowids: first...last)
        case 0x02, 0x0A:
            self = .index
        default:
            self = .other
        }
    }

    /// The rows of a table leaf page (nil for any other page, or bytes that do not parse):
    /// each rowid with a hash of its cell after the rowid (payload size, the record's local
    /// part and, for a record that overflows, the first overflow page's number). Equal rows
    /// written by SQLite have equal cells; `usableSize` is the page size less reserved bytes.
    package static func rowDigests(_ page: UnsafeRawBufferPointer, number: Int, usableSize: Int) -> [RowDigest]? {
        let h = number == 1 ? 100 : 0
        guard page.count >= h + 8, page[h] == 0x0D, usableSize > 480 else { return nil }
        let cells = Int(page[h + 3]) << 8 | Int(page[h + 4])
        guard h + 8 + cells * 2 <= page.count else { return nil }
        var rows = [RowDigest]()
        rows.reserveCapacity(cells)
        let u = usableSize
        for i in 0..<cells {
            var at = Int(page[h + 8 + 2 * i]) << 8 | Int(page[h + 9 + 2 * i])
            guard let payload = varint(page, &at), let rowid = varint(page, &at), payload >= 0 else { return nil }
            var stored = Int(payload)
            if stored > u - 35 {
                let m = (u - 12) * 32 / 255 - 23
                let k = m + (stored - m) % (u - 4)
                stored = (k <= u - 35 ? k : m) + 4
            }
            guard at + stored <= page.count else { return nil }
            rows.append(RowDigest(rowid: rowid, hash: hash(UnsafeRawBufferPointer(rebasing: page[at..<(at + stored)]), seed: UInt64(payload))))
        }
        return rows
    }

    /// A fast 64-bit hash of `bytes` (not cryptographic: it tells rows apart, and the rows it
    /// calls different are compared again by value).
    static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var h = seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
        var i = 0
        while i + 8 <= bytes.count {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 29
            i += 8
        }
        while i < bytes.count {
            h = (h ^ UInt64(bytes[i])) &* 0xC4CE_B9FE_1A85_EC53
            i += 1
        }
        h ^= h >> 33
        return h &* 0xFF51_AFD7_ED55_8CCD ^ (h >> 29)
    }

    /// SQLite's variable-length integer at `at` (1 to 9 bytes, big-endian), advancing `at`.
    static func varint(_ bytes: UnsafeRawBufferPointer, _ at: inout Int) -> Int64? {
        var value: UInt64 = 0
        for i in 0..<9 {
            guard at < bytes.count else { return nil }
            let byte = bytes[at]
            at += 1
            if i == 8 { return Int64(bitPattern: value << 8 | UInt64(byte)) }
            value = value << 7 | UInt64(byte & 0x7f)
            if byte & 0x80 == 0 { break }
        }
        return Int64(bitPattern: value)
    }

    /// The leaf pages of the table b-tree rooted at `root`, in key order, reading pages through
    /// `page`; nil when the tree holds a page that is not a table b-tree page, or loops.
    package static func leaves(root: Int, page: (Int) -> BTreePage?) -> [Int]? {
        var result = [Int]()
        var seen = Set<Int>()
        var stack = [root]
        while let number = stack.popLast() {
            guard seen.insert(number).inserted else { return nil }
            switch page(number) {
            case .tableLeaf: result.append(number)
            case .tableInterior(let children): stack.append(contentsOf: children.reversed())
            default: return nil
            }
        }
        return result
    }
}

/// One row of a table leaf page: its rowid and a hash of its stored cell.
package struct RowDigest: Sendable, Equatable {
    package let rowid: Int64
    package let hash: UInt64
}

/// Reads pages of a database file that nothing writes (a backup), by page number.
package final class PageFile {
    private let fd: Int32
    package let pageSize: Int
    /// The page size less the reserved bytes at each page's end.
    package let usableSize: Int
    private var buffer: UnsafeMutableRawBufferPointer

    /// Opens `path` read-only and reads its page size from the header.
    /// - Throws: `Failure` `.io`.
    package init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        var header = [UInt8](repeating: 0, count: 100)
        guard pread(fd, &header, 100, 0) == 100 else {
            close(fd)
            throw Failure(.sqliteIOError, "cannot read the header of \(path)")
        }
        let size = Int(header[16]) << 8 | Int(header[17])
        pageSize = size == 1 ? 65536 : size
        usableSize = pageSize - Int(header[20])
        buffer = .allocate(byteCount: pageSize, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        close(fd)
    }

    /// Page `number` parsed, or nil when the file does not hold it.
    package func page(_ number: Int) -> BTreePage? {
        guard read(number) else { return nil }
        return BTreePage(UnsafeRawBufferPointer(buffer), number: number)
    }

    /// The rows of page `number`, a table leaf (see `BTreePage.rowDigests`).
    package func rowDigests(_ number: Int) -> [RowDigest]? {
        guard read(number) else { return nil }
        return BTreePage.rowDigests(UnsafeRawBufferPointer(buffer), number: number, usableSize: usableSize)
    }

    /// The bytes of page `number`, or nil when the file does not hold it.
    package func bytes(_ number: Int) -> [UInt8]? {
        guard read(number) else { return nil }
        return [UInt8](UnsafeRawBufferPointer(buffer))
    }

    /// The pages on the freelist of a database (https://sqlite.org/fileformat2.html#the_freelist):
    /// trunk pages from the header of page 1 (offsets 32 and 36), each naming the next trunk and
    /// its leaf pages. `page` gives a page's bytes. Nil when a page cannot be read or the list
    /// does not match the header's count.
    package static func freelist(page: (Int) -> [UInt8]?) -> Set<Int>? {
        func u32(_ bytes: [UInt8], _ at: Int) -> Int? {
            guard at + 4 <= bytes.count else { return nil }
            return Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
        }
        guard let first = page(1), var trunk = u32(first, 32), let total = u32(first, 36) else { return nil }
        var free = Set<Int>()
        while trunk != 0 {
            guard free.count < total, !free.contains(trunk), let bytes = page(trunk), let next = u32(bytes, 0), let leaves = u32(bytes, 4),
                  8 + leaves * 4 <= bytes.count else { return nil }
            free.insert(trunk)
            for i in 0..<leaves {
                guard let leaf = u32(bytes, 8 + 4 * i) else { return nil }
                free.insert(leaf)
            }
            trunk = next
        }
        return free.count == total ? free : nil
    }

    private func read(_ number: Int) -> Bool {
        number >= 1 && pread(fd, buffer.baseAddress, pageSize, off_t(number - 1) * off_t(pageSize)) == pageSize
    }
}
