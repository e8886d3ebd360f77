import Foundation

/// The fuzz input of the state-file targets: several named files in one input.
///
/// Each file starts with a line `==> KEY`; its content runs up to the next such line (the line
/// break before it belongs to the marker). Bytes before the first marker are ignored, so any
/// input is some set of files.
enum StateFiles {
    static let marker = Array("==> ".utf8)

    static func parse(_ input: Data) -> [String: Data] {
        let bytes = [UInt8](input)
        var files: [String: Data] = [:]
        var starts: [Int] = []
        var index = 0
        while index + marker.count <= bytes.count {
            if (index == 0 || bytes[index - 1] == UInt8(ascii: "\n"))
                && bytes[index..<(index + marker.count)].elementsEqual(marker)
            {
                starts.append(index)
            }
            index += 1
        }
        for (number, start) in starts.enumerated() {
            let end = number + 1 < starts.count ? starts[number + 1] - 1 : bytes.count
            let nameStart = start + marker.count
            let nameEnd =
                bytes[nameStart..<max(nameStart, end)].firstIndex(of: UInt8(ascii: "\n")) ?? max(nameStart, end)
            let name = String(decoding: bytes[nameStart..<nameEnd], as: UTF8.self)
            let contentStart = min(nameEnd + 1, max(nameStart, end))
            files[name] = Data(bytes[contentStart..<max(contentStart, end)])
        }
        return files
    }
}
