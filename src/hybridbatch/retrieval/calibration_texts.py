"""Built-in calibration texts for the int8 ONNX path: short questions and longer encyclopedia-style passages
in many scripts. Only per-channel activation ranges are taken from them (no labels, no evaluation data)."""

CALIBRATION_TEXTS: tuple[str, ...] = (
    # English
    "When was the first railway line in the country opened?",
    "The river rises in the northern mountains and flows for about 400 kilometres before it reaches the sea. "
    "Its delta is home to several protected wetlands and a large fishing industry.",
    "Which team won the championship after the final was replayed?",
    "In 1887 the city council approved a plan to build a new harbour, and construction began two years later. "
    "The project was finished in 1901 at almost twice the expected cost.",
    # German
    "Wie viele Einwohner hatte die Stadt im Jahr 1900?",
    "Die Universität wurde im 15. Jahrhundert gegründet und gehört zu den ältesten Hochschulen Europas. "
    "Heute studieren dort mehr als 30.000 Menschen in elf Fakultäten.",
    # Spanish
    "¿Quién diseñó el edificio principal del museo?",
    "La cordillera se extiende a lo largo de la costa occidental y alcanza su mayor altura en el sur, donde "
    "varios volcanes siguen activos. El clima cambia rápidamente con la altitud.",
    # French
    "Quelle est la langue officielle de la région ?",
    "Le traité fut signé après de longues négociations entre les deux royaumes, qui mirent fin à une guerre de "
    "près de trente ans et fixèrent une nouvelle frontière le long du fleuve.",
    # Portuguese / Italian / Romanian
    "Em que ano a empresa começou a exportar seus produtos?",
    "Il castello fu ricostruito nel Seicento dopo un incendio e ospita oggi una biblioteca e un piccolo museo "
    "dedicato alla storia della valle.",
    "Orașul este situat pe malul drept al fluviului și are un port important pentru comerțul regional.",
    # Russian / Greek
    "Какой учёный впервые описал это явление?",
    "Экспедиция отправилась на север весной 1912 года и вернулась только через два года, собрав большую "
    "коллекцию растений и минералов.",
    "Πότε ιδρύθηκε η πρώτη δημόσια βιβλιοθήκη της πόλης;",
    "Το νησί είναι γνωστό για τους αρχαίους ναούς του και για τις παραλίες του, που προσελκύουν χιλιάδες "
    "επισκέπτες κάθε καλοκαίρι.",
    # Turkish / Vietnamese
    "Köprünün inşası kaç yıl sürdü?",
    "Sông chảy qua nhiều tỉnh ở miền Bắc và cung cấp nước cho hàng triệu hecta ruộng lúa. Vào mùa mưa, mực "
    "nước có thể dâng cao rất nhanh.",
    "Ai là người đã phát minh ra loại máy này?",
    # Arabic / Hindi
    "متى تأسست الجامعة الأولى في البلاد؟",
    "تقع المدينة على ساحل البحر وتشتهر بأسواقها القديمة ومساجدها التاريخية، وكانت مركزا مهما للتجارة "
    "بين الشرق والغرب.",
    "इस नदी की कुल लंबाई कितनी है?",
    "यह मंदिर सत्रहवीं शताब्दी में बनाया गया था और इसकी दीवारों पर सुंदर नक्काशी है। हर वर्ष यहाँ एक बड़ा मेला "
    "लगता है।",
    # Chinese / Japanese / Korean / Thai
    "这座桥是哪一年建成的？",
    "该地区气候温和，雨量充沛，适合种植茶叶和水稻。二十世纪以来，旅游业逐渐成为当地的重要产业。",
    "この寺はいつ建てられましたか。",
    "その港町は江戸時代に交易で栄え、現在も古い町並みが残っている。毎年夏には大きな祭りが行われる。",
    "이 소설의 작가는 누구입니까?",
    "그 도시는 강의 하류에 위치하며, 오랫동안 지역 상업과 교통의 중심지였다.",
    "ทีมใดชนะการแข่งขันในปีนั้น",
    "แม่น้ำสายนี้ไหลผ่านหลายจังหวัดทางภาคเหนือ และเป็นแหล่งน้ำสำคัญสำหรับการเกษตรของประชาชน",
    # numbers, names, mixed script
    "The 2004 census counted 1,254,300 inhabitants (51.2% women) in 37 districts.",
    "NASA, ESA and JAXA launched the joint mission on 14 March 2016 from Baikonur.",
)
