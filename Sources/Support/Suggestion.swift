/// "Did you mean": the nearest of a few known names to a mistyped one.
public enum Suggestion {
    /// The name in `candidates` nearest to `word` by edit distance (a swap of two neighbouring
    /// letters counts as one edit), when it is near enough to be a typo: at most a third of
    /// the word's length, and at least 1 (2 for words of 5 letters and more). Nil otherwise.
    /// Cost: O(candidates × length²), for the handful of names a CLI knows.
    public static func nearest(to word: String, in candidates: [String]) -> String? {
        let limit = max(word.count >= 5 ? 2 : 1, word.count / 3)
        let scored = candidates.map { ($0, distance(word.lowercased(), $0.lowercased())) }.filter { $0.1 <= limit }
        return scored.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }?.0
    }

    /// Optimal string alignment distance (Levenshtein with adjacent transpositions).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }
}
